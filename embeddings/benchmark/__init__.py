"""`qabot bench`: qabot and peer libraries measured on one corpus, one model, one machine."""
