"""The study service: researchers on their own machines run studies through the coordinator.

A FastAPI application on uvicorn, over TLS with a server certificate from the
coordinator's CA (``tls/service.pem``), started and stopped with the SuperLink by
``workbench coordinator start|stop`` (process.py). A researcher logs in by signing a
server nonce with their SSH key (SSHSIG, namespace ``hospital-dp-workbench/login@v1``;
``sk-`` hardware keys work: they cannot do TLS client authentication) and gets a
short-lived bearer token bound to that key's fingerprint (sessions.py). The service
then accepts only studies and query batches signed by that same key (the sites verify
them again), runs them through federation/coordinator/study_runs.py, and keeps
following a study when its client goes away (studies.py). Progress is a resumable
event list (``GET /studies/{id}/events?after=N&wait=S``); the result and the trained
weights (numpy arrays in an ``.npz``, no pickle) go only to the researcher who
started the study. Every request is written to a hash-chained log whose heads the
service signs with its certificate's key (audit_log.py).

Routes (app.py): ``POST /login/challenge``, ``POST /login``, ``GET /sites``,
``GET /studies`` (the researcher's own, newest first), ``POST /studies``,
``GET /studies/{id}`` (the signed request: spec, encoder, signature), ``GET /studies/{id}/events``, ``GET /studies/{id}/result``,
``GET /studies/{id}/model``, ``DELETE /studies/{id}``, ``POST /queries``,
``GET /budget``, ``GET /health``.
"""
