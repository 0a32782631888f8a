"""Where a ``Workbench``'s studies run: one back end per place (see ``base.Backend``).

``simulation``: hospitals simulated on this machine (their ledgers and tables are here).
``coordinator_folder``: real hospital nodes behind a coordinator whose folder is on this
machine. ``remote``: the same nodes through the coordinator's study service at a URL, from
the researcher's own machine.
"""
