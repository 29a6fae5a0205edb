"""`edgeres device ...`: the user's own Jetsons over ssh (edgeres.device). Thin click adapters, registered by
edgeres.cli."""

from __future__ import annotations

import json

import click


@click.group("device")
def device_grp():
    """Your own Jetsons, over ssh: `edgeres device probe ssh://jetson`.

    \b
    Addresses: ssh://[user@]host[:port] or a Host alias of ~/.ssh/config. The system OpenSSH client connects (your
    keys, agent, jump hosts and known hosts apply), never with a password (BatchMode). EDGERES_SSH_COMMAND replaces
    the ssh command (e.g. "ssh -F lab_config"). On the device, edgeres writes only under ~/.cache/edgeres.
    """


@device_grp.command("probe")
@click.argument("devices", nargs=-1, required=True)
@click.option("--target", default=None, help="Also check this target profile against the board.")
@click.option("--json", "as_json", is_flag=True, help="Print what was found as JSON.")
def probe_cmd(devices, target, as_json):
    """What each device is and has: board, L4T/JetPack, TensorRT, CUDA, Python and numpy, DLA cores, power mode and
    whether clocks are locked, free disk and memory; every missing piece with the command that fixes it. Exit 1 when
    a device cannot run a bundle (or does not fit --target)."""
    from edgeres.device.fleet import Fleet
    from edgeres.device.probe import check_target, require_ready, trt_note

    with Fleet(devices, log=lambda msg: None) as fleet:
        infos = [s.info for s in fleet.sessions]
        if as_json:
            click.echo(json.dumps([i.to_dict() | {"label": i.label()} for i in infos], indent=2))
        else:
            for k, info in enumerate(infos):
                click.echo(("\n" if k else "") + "\n".join(info.lines()))
        for info in infos:
            if target:
                from edgeres.targets import get_target

                t = get_target(target)
                for note in (check_target(info, t), trt_note(info, t)):
                    if note:
                        click.echo(f"note: {note}")
            require_ready(info)
