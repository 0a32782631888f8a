"""What travels between the coordinator and a site: the training spec, the task kinds,
query requests as message config, the keys and shapes of replies and refusals, and a
request as the site reads it. Both rooms import it; it imports neither."""
