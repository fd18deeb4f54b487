"""Text the in-sandbox harness writes and the host reads back. Standard library only."""

STARTED = "mlgrade-harness: started"  # printed first by runner.py and probe.py: candidate code cannot un-print it
COLLECTION_HUNG = "not run: collecting the tests (which imports the submission) did not finish"
