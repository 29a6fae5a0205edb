"""The device in the loop: the user's own Jetsons, reached with the system OpenSSH client (``--device``).

``address`` (where), ``transport`` (one multiplexed ssh connection per run, file transfer over it), ``faults`` (every
failure as one line), ``probe`` (what the board is and has), ``session`` (the bundle shipped, built, checked and
measured there), ``measure`` and ``rows`` (its figures as report rows), ``fleet`` (the devices of one run).
"""
