"""A slow network for transfer tests: ``python slow_ssh.py ssh ARGS...`` runs ssh, feeding what edgeres streams into a
remote ``cat >`` at $EDGERES_TEST_SSH_RATE bytes/s (other commands run as they are). Set through EDGERES_SSH_COMMAND;
it slows the transfer down so a test can stop the real server while bytes are still flowing."""

import os
import subprocess
import sys
import time

argv = sys.argv[1:]
if "cat >" not in argv[-1]:
    os.execvp(argv[0], argv)
rate = float(os.environ.get("EDGERES_TEST_SSH_RATE", "1000000"))
proc = subprocess.Popen(argv, stdin=subprocess.PIPE)
try:
    while True:
        block = os.read(0, 32768)
        if not block:
            break
        proc.stdin.write(block)
        proc.stdin.flush()
        time.sleep(len(block) / rate)
    proc.stdin.close()
except BrokenPipeError:
    pass
sys.exit(proc.wait())
