"""IOTP session records (app label ``iotp``): what the IOTP Payment API keeps
beside the ledger. The door is ``payments.doors.iotp``; the rules are in
``payments.services.iotp``."""
