"""The coordinator side: a Flower ServerApp that runs studies and mirrors receipts."""
