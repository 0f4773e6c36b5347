"""arq workers: the jobs that run tool calls, and their WorkerSettings."""
