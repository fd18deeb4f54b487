"""Host-side judges for check kinds whose verdict is computed outside the candidate's process."""
