"""One requirement universe with typed ids, for every kind of target.

Ids are ``KIND:NAME`` for the hypervisor (``abi:CPU_ON``, ``event:VCPU_START``,
``invariant:write_within_grant``, ``step:handles_stable``, ``noninterference:...``) and the
registry's own ids for VIRTIO (``VIRTIO-2.7.8-DEV-USED-LEN``), its ring rules
(``PVSPEC-RING-*``) and the vhost-user protocol rules (``VHOST-USER-*``).  Reports account
for exactly this universe: a requirement absent from it would be invisible, one present
but never evaluated is shown as not judged.
"""

from __future__ import annotations

import functools

import attrs

__all__ = ["VHOST_USER_RULES", "Requirement", "by_id", "hypervisor", "views_of", "virtio_device"]


@attrs.frozen
class Requirement:
    id: str
    kind: str  # abi | event | invariant | step | noninterference | virtio | ring | vhost-user
    clause: str
    text: str = ""


# The vhost-user protocol's own rules (docs/interop/vhost-user.rst in QEMU): what a
# back-end owes its front-end, whatever its device type.
VHOST_USER_RULES: dict[str, tuple[str, str]] = {
    "VHOST-USER-CONNECT": ("vhost-user.rst/Communication", "a back-end accepts a front-end's "
                           "connection on its Unix socket"),
    "VHOST-USER-REPLY": ("vhost-user.rst/Message types", "replies carry version 1, the reply "
                         "bit, the request's code and the payload size of that request, and "
                         "no file descriptors the request does not call for"),
    "VHOST-USER-VRING-BASE": ("vhost-user.rst/GET_VRING_BASE", "stopping a ring returns the "
                              "next available index the back-end would process"),
    "VHOST-USER-RESPONSIVE": ("vhost-user.rst/Communication", "a back-end answers or closes "
                              "the connection; it never hangs nor dies on guest input"),
}


@functools.cache
def hypervisor() -> tuple[Requirement, ...]:
    """Every hypervisor requirement: each ABI row, the decoder, each event, each invariant,
    step property and noninterference property."""
    from spec import invariants
    from spec.hypercalls import abi

    out = [Requirement(f"abi:{r.name}", "abi", r.clause) for r in abi.TABLE]
    out.append(Requirement("abi:decode", "abi", "SMCCC DEN0028 2.5; pvspec ABI reserved bits",
                           "unknown ids and reserved bits are rejected as the ABI says"))
    out += [Requirement(f"event:{e.name}", "event", e.clause) for e in abi.EVENTS]
    out += [Requirement(f"invariant:{i.name}", "invariant", i.clause, i.why.strip())
            for i in invariants.INVARIANTS]
    out += [Requirement(f"step:{p.name}", "step", p.clause, p.why.strip())
            for p in invariants.STEP_PROPERTIES]
    return tuple(out)


def hypervisor_proof_extras(names: tuple[str, ...]) -> tuple[Requirement, ...]:
    """Noninterference properties that a proof run adds to the universe."""
    return tuple(Requirement(f"noninterference:{n}", "noninterference",
                             "pvspec isolation (noninterference)") for n in names)


@functools.cache
def virtio_device(kind: str) -> tuple[Requirement, ...]:
    """What a vhost-user back-end of device ``kind`` (``blk``, ``fs``, ``net`` ...) answers
    for: the device-side requirements of chapters 2, 3 and 6 and of its device chapter,
    the ring rules the oracle states, and the vhost-user protocol rules.  The transport
    chapter (4) belongs to the VMM in front of a back-end, not to the back-end."""
    from spec.virtio import oracle as orc
    from spec.virtio.registry import all_requirements

    chapter = {"blk": "5.2", "net": "5.1", "fs": "5.11", "gpu": "5.7", "snd": "5.14"}[kind]

    def ours(section: str) -> bool:
        return section.split(".")[0] in ("2", "3", "6") or f"{section}.".startswith(
            f"{chapter}.")

    out = [Requirement(r.id, "virtio", r.section, r.text) for r in all_requirements()
           if r.side == "device" and ours(r.section)]
    # the oracle's ring rules, and the rules of this device's chapter it reads from its
    # descriptive text (blk's GET_ID answer is no rule of a vhost-user-fs back-end)
    out += [Requirement(rule, "ring", section, text)
            for rule, (section, text) in orc.IMPLIED_RULES.items() if ours(section)]
    out += [Requirement(rule, "vhost-user", section, text)
            for rule, (section, text) in VHOST_USER_RULES.items()]
    if kind == "fs":  # FUSE's rules, which §5.11.6.1 takes over by reference
        from spec.virtio.fuse import FUSE_RULES

        out += [Requirement(rule, "fuse", section, text)
                for rule, (section, text) in FUSE_RULES.items()]
    if kind == "gpu":  # what the GPU judges read from §5.7's descriptive text
        from spec.virtio.devices.gpu import IMPLIED_RULES as GPU_RULES

        out += [Requirement(rule, "virtio", section, text)
                for rule, (section, text) in GPU_RULES.items()]
    return tuple(out)


def by_id(reqs: tuple[Requirement, ...]) -> dict[str, Requirement]:
    return {r.id: r for r in reqs}


def views_of(requirement: str) -> frozenset[str]:
    """The guest-visible views through which a hypervisor requirement is judged (see
    ``spec.invariants.VIEWS``): ABI rows and events through results, invariants and step
    properties through what their own declaration names."""
    from spec import invariants

    kind, _, name = requirement.partition(":")
    if kind == "invariant" and name in invariants.BY_NAME:
        return invariants.BY_NAME[name].visible_in
    if kind == "step" and name in invariants.STEP_BY_NAME:
        return invariants.STEP_BY_NAME[name].visible_in
    return frozenset({"result"})
