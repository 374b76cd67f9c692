"""Evidence and the central ledger: the durable outbox, the ledger's HTTP client, permit sync,
the records writer, the hash-chained audit log and its replay.
"""
