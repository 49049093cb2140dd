"""Jobs: the job file, the spool's store and scanner, and the runner of the jobs' processes."""
