"""virtio-fs (virtiofsd) past FUSE_INIT: LOOKUP, GETATTR, OPEN, READ, WRITE, READDIR,
RELEASE and FORGET on the scratch tree the suite created (fs_tree), judged twice.

* On the VIRTIO side every request goes through the split-ring oracle as blk's do
  (chains, used.len within the writable bytes, used index progress, notifications); a
  request the device writes a reply to is also run twice under two poisons somewhere in
  ``fs-used-len`` (2.7.8.2: the first used.len bytes are written).
* On the FUSE side the reply is judged by :mod:`spec.virtio.fuse` against what the shared
  directory really holds: the out header (unique echoed, len equal to used.len, errno
  range) and what the opcode's answer must say.

virtiofsd serves one front-end connection and exits when it leaves, so the checks share
one :class:`FsSession`: the first opens it (negotiation, both queues, FUSE_INIT) and each
hands it on through ``target.handoff``.  Offsets, sizes, names and chain splits are drawn
by Hypothesis (examples per the run's profile, derandomized); a failure is shrunk to a
minimal request and reported with its evidence.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky

from conformance.results import NotJudged
from conformance.vhost_user import checks as ck
from conformance.vhost_user import fs_tree
from conformance.vhost_user import session as ss
from conformance.vhost_user.frontend import DEFAULT_TIMEOUT, Frontend, Vring
from conformance.vhost_user.memory import MemfdMemory
from conformance.vhost_user.protocol import (
    PF,
    VHOST_USER_F_PROTOCOL_FEATURES,
    ProtocolViolation,
    ViolationKind,
)
from conformance.vhost_user.targets import Target
from spec.virtio import features as F
from spec.virtio import fuse as fu
from spec.virtio import oracle as orc
from spec.virtio import ring_math as rm
from spec.virtio import split as sp
from spec.virtio.memory import write_le16

MEM_SIZE = 512 << 10
QSIZE = 64
SCRATCH = 0x8000  # indirect tables, 0x2000 per queue
DATA = 0x20000
HIPRIO, REQUEST = 0, 1
GET_QUEUE_NUM = 17
FS_CONFIG_SIZE = 40
EXAMPLES = {"ci": 12, "thorough": 150}
MAX_READ = 16 << 10
POISONS = (0xA5, 0x5A)

# One judged item: (rule, held, detail, evidence)
Item = tuple[str, bool, str, tuple[dict[str, Any], ...]]


@attrs.define
class Queue:
    layout: sp.SplitLayout
    drv: sp.SplitDriver
    view: orc.SplitView
    vring: Vring


@attrs.define
class Call:
    """One request and what came of it."""

    opcode: int
    unique: int
    step: ss.Step
    used_len: int | None
    written: bytes  # the chain's device-writable bytes after completion
    reply: fu.Reply | None = None


class FsSession:
    """Negotiated, memory shared, hiprio (0) and one request queue (1) set up, FUSE_INIT
    sent: judged FUSE requests from here on."""

    WANT = F.mask(F.VERSION_1, F.EVENT_IDX, F.INDIRECT_DESC)
    CONFIG_SIZE = FS_CONFIG_SIZE

    def __init__(self, target: Target, fe: Frontend | None = None) -> None:
        self.target = target
        self.fe = fe if fe is not None else Frontend(target.socket_path,
                                                     timeout=DEFAULT_TIMEOUT)
        self.fe.timeout = DEFAULT_TIMEOUT  # a handed-over connection had the probe's
        self.mem: MemfdMemory | None = None
        self.unique = 0x100
        self.init: Call | None = None
        try:
            self.offered, self.acked, self.poffered, self.packed = self.fe.negotiate(
                self.WANT, ss.PROTO_WANT)
            proto = self.acked >> VHOST_USER_F_PROTOCOL_FEATURES & 1
            self.nq = self.fe.get_u64(GET_QUEUE_NUM) if proto else 2
            self.config = (self.fe.get_config(self.CONFIG_SIZE)
                           if self.packed >> PF.CONFIG & 1 else b"")
            self.mem = MemfdMemory(MEM_SIZE)
            self.feats = rm.RingFeatures.from_bits(self.acked)
            lays = [sp.SplitLayout.contiguous(0x4000 * q, QSIZE) for q in (HIPRIO, REQUEST)]
            drvs = [sp.driver_init(self.mem, lay, self.feats, scratch=SCRATCH + 0x2000 * q)
                    for q, lay in enumerate(lays)]
            self.fe.set_mem_table([self.mem])
            self.queues = [Queue(lay, drv, orc.SplitView.start(lay, self.feats),
                                 self.fe.setup_vring(q, self.mem, lay))
                           for q, (lay, drv) in enumerate(zip(lays, drvs, strict=True))]
        except BaseException:
            self.close()
            raise

    @classmethod
    def take(cls, t: Target) -> FsSession:
        """The run's session (the connection handed over by the connect check, or the
        session the last check left); a new one when there is none."""
        h = t.take_handoff()
        if isinstance(h, FsSession):
            return h
        s = cls(t, h)
        s.init = s.call(fu.INIT, 0, fu.INIT_IN.pack(7, 31, 0, 0), 16 + fu.INIT_OUT_SIZE)
        return s

    def give_back(self) -> None:
        self.target.handoff = self

    def close(self) -> None:
        self.fe.close()
        if self.mem is not None:
            self.mem.close()

    @property
    def shared(self) -> str:
        return os.path.join(self.target.tmpdir or "", "shared")

    def next_unique(self) -> int:
        self.unique += 7  # not 1, 2, 3: a device that answers a count shows
        return self.unique

    def call(self, opcode: int, nodeid: int, body: bytes, out_size: int, *,
             queue: int = REQUEST, split: int = 0, poison: int = POISONS[0],
             unique: int | None = None, indirect: bool = False) -> Call:
        """Place one request (readable part, then ``out_size`` writable bytes poisoned,
        split after byte ``split`` when nonzero; in an indirect table with ``indirect``
        where negotiated), publish, kick, wait, judge the ring."""
        unique = self.next_unique() if unique is None else unique
        step, length, written = self.call_raw(fu.encode_request(opcode, unique, nodeid, body),
                                              out_size, queue=queue, split=split,
                                              poison=poison, indirect=indirect)
        c = Call(opcode, unique, step, length, written)
        if step.outcome == "completed" and out_size:
            c.reply = fu.Reply.decode(written[:length] if length is not None else written)
        return c

    def call_raw(self, req: bytes, out_size: int, *, queue: int = REQUEST, split: int = 0,
                 poison: int = POISONS[0], indirect: bool = False
                 ) -> tuple[ss.Step, int | None, bytes]:
        """:meth:`call` for any device-readable bytes ``req``: the judged step, used.len and
        the ``out_size`` device-writable bytes after completion."""
        assert self.mem is not None
        q = self.queues[queue]
        rep = (DATA + len(req) + 63) & ~63
        self.mem.write(DATA, req)
        self.mem.write(rep, bytes([poison]) * out_size)
        bufs = [(DATA, len(req), False)]
        if out_size and 0 < split < out_size:
            bufs += [(rep, split, True), (rep + split, out_size - split, True)]
        elif out_size:
            bufs.append((rep, out_size, True))
        q.drv, head = sp.driver_add(self.mem, q.drv, bufs, indirect and self.feats.indirect)
        if self.feats.event_idx:
            sp.driver_set_used_event(self.mem, q.drv, q.drv.last_used)
        before = self.mem.frozen()
        write_le16(before, rm.avail_idx_addr(q.layout.avail), q.drv.avail_idx)
        ring: dict[str, Any] = {"avail_idx": q.drv.avail_idx, "last_avail": q.view.last_avail,
                                "used_idx_before": q.view.used_idx,
                                "last_used": q.drv.last_used}
        q.drv = sp.driver_publish(self.mem, q.drv)
        q.drv, need = sp.driver_must_kick(self.mem, q.drv)
        if need:
            q.vring.kick()
        outcome, notified = self._wait(q, 1, 3.0)
        after = self.mem.frozen()
        ring |= {"used_idx_after": sp.read_used_idx(after, q.layout), "kicked": need,
                 "notified": notified, "outcome": outcome}
        verdict, q.view = orc.judge_split(before, after, q.view, notified=notified,
                                          expect_progress=outcome == "completed")
        try:
            q.drv, got = sp.driver_collect(self.mem, q.drv)
        except sp.DeviceMisbehaved:
            got = []
        length = next((n for h, n in got if h == head), None)
        step = ss.Step(verdict, [], notified, outcome, layout=q.layout, before=before,
                       after=after, placed=[(head, None)], ring=ring)  # type: ignore[list-item]
        return step, length, after.read(rep, out_size) if out_size else b""

    def _wait(self, q: Queue, expect: int, timeout: float) -> tuple[str, bool]:
        assert self.mem is not None
        deadline = time.monotonic() + timeout
        notified = False
        start = q.drv.last_used
        while rm.idx_sub(sp.read_used_idx(self.mem, q.layout), start) < expect:
            left = deadline - time.monotonic()
            if left <= 0:
                if not self.target.alive():
                    return "crashed", notified
                return ("closed" if self.fe.backend_closed() else "no-progress"), notified
            if q.vring.wait_call(min(left, 0.01)):
                notified = True
            elif self.fe.backend_closed():
                return ("crashed" if not self.target.alive() else "closed"), notified
        if not notified:
            notified = q.vring.wait_call(0.05)
        return "completed", notified


# --- folding judged items ------------------------------------------------------------------

def ring_items(t: Target, call: Call, what: str) -> list[Item]:
    """The ring oracle's verdict on one request (as :meth:`checks.Ctx.step` folds a
    step); a back-end that left raises :class:`ProtocolViolation`."""
    st_ = call.step
    out: list[Item] = [(v.rule, False, f"{what}: {v.detail}", st_.evidence())
                       for v in st_.verdict.violations]
    if st_.outcome in ("closed", "crashed"):
        kind = ViolationKind.CRASHED if st_.outcome == "crashed" else ViolationKind.CLOSED
        raise ProtocolViolation(kind, 0, f"{what}: the back-end "
                                f"{'exited' if st_.outcome == 'crashed' else 'closed'} with "
                                f"the request in flight", st_.evidence())
    out += [(r, True, what, ()) for r in sorted(st_.verdict.judged - st_.verdict.rules())]
    if not st_.verdict.violations:
        ok = st_.outcome == "completed"
        out.append(("PVSPEC-RING-PROGRESS", ok, f"{what}: outcome {st_.outcome}",
                    () if ok else st_.evidence()))
    return out


def fuse_items(call: Call, what: str, judged: fu.Judged) -> list[Item]:
    return [(rule, ok, f"{what}: {detail}", () if ok else call.step.evidence())
            for rule, ok, detail in judged]


def judged_call(s: FsSession, what: str, opcode: int, nodeid: int, body: bytes,
                out_size: int, **kw: Any) -> tuple[Call, list[Item]]:
    """A request, its ring items and its out-header items (no header: a completion
    without a reply is an OUT-LEN failure; no completion: the ring's progress says so)."""
    c = s.call(opcode, nodeid, body, out_size, **kw)
    items = ring_items(s.target, c, what)
    if c.step.outcome == "completed" and out_size:
        hdr, _ = fu.judge_header(c.unique, c.written, c.used_len)
        items += fuse_items(c, what, hdr)
    return c, items


def add_all(c: ck.Ctx, items: list[Item]) -> None:
    for rule, ok, detail, trace in items:
        c.add(rule, ok, detail, trace)


def failed(t: Target, check: str, items: list[Item]) -> bool:
    """An item that fails and is no known deviation of ``t``."""
    return any(not ok and ck.expected_deviation(t.name, check, rule, detail) is None
               for rule, ok, detail, _ in items)


# --- the operations -----------------------------------------------------------------------

class Walker:
    """LOOKUP by path from the root, remembering nodeids and counting lookups (FORGET)."""

    def __init__(self, s: FsSession) -> None:
        self.s = s
        self.ids: dict[str, int] = {"": fu.ROOT_ID}
        self.attrs: dict[str, fu.Attr | None] = {"": None}
        self.lookups: Counter[int] = Counter()

    def lookup(self, rel: str, split: int = 0) -> tuple[int, list[Item]]:
        """LOOKUP of ``rel`` (its parent looked up first); 0: no nodeid."""
        parent, _, name = rel.rpartition("/")
        items: list[Item] = []
        if parent not in self.ids:
            _, items = self.lookup(parent)
        pid = self.ids.get(parent, 0)
        if not pid:
            return 0, items
        what = f"LOOKUP {rel!r}"
        c, more = judged_call(self.s, what, fu.LOOKUP, pid, fu.name_arg(os.fsencode(name)),
                              16 + fu.ENTRY_OUT_SIZE, split=split)
        items += more
        if c.reply is None:
            return 0, items
        node = fs_tree.node(self.s.shared, rel)
        judged, nodeid, a = fu.judge_lookup(c.reply, node)
        items += fuse_items(c, what, judged)
        if nodeid:
            self.ids[rel], self.attrs[rel] = nodeid, a
            self.lookups[nodeid] += 1
        return nodeid, items

    def forget_all(self) -> list[Item]:
        """FORGET every nodeid looked up, on the hiprio queue (no reply: the chain is
        used with nothing written)."""
        items: list[Item] = []
        for nodeid, n in self.lookups.items():
            _, more = judged_call(self.s, f"FORGET nodeid {nodeid} nlookup {n}", fu.FORGET,
                                  nodeid, fu.FORGET_IN.pack(n), 0, queue=HIPRIO)
            items += more
        self.lookups.clear()
        return items


def open_file(s: FsSession, nodeid: int, what: str, directory: bool = False
              ) -> tuple[int | None, list[Item]]:
    c, items = judged_call(s, what, fu.OPENDIR if directory else fu.OPEN, nodeid,
                           fu.OPEN_IN.pack(os.O_RDONLY if not directory else 0, 0),
                           16 + fu.OPEN_OUT.size)
    if c.reply is None:
        return None, items
    judged, fh = fu.judge_open(c.reply)
    return fh, items + fuse_items(c, what, judged)


def release(s: FsSession, nodeid: int, fh: int, directory: bool = False) -> list[Item]:
    op = fu.RELEASEDIR if directory else fu.RELEASE
    what = f"{fu.OPCODES[op]} fh {fh}"
    c, items = judged_call(s, what, op, nodeid, fu.RELEASE_IN.pack(fh, 0, 0, 0), 16)
    return items + (fuse_items(c, what, fu.judge_release(c.reply, fu.OPCODES[op]))
                    if c.reply is not None else [])


def read(s: FsSession, nodeid: int, fh: int, rel: str, offset: int, size: int,
         split: int = 0, indirect: bool = False) -> list[Item]:
    what = f"READ {rel!r} offset {offset} size {size}" + (
        f", reply split at {split}" if split else "") + (", indirect" if indirect else "")
    c, items = judged_call(s, what, fu.READ, nodeid, fu.read_in(fh, offset, size),
                           16 + size, split=split, indirect=indirect)
    node = fs_tree.node(s.shared, rel)
    if c.reply is None or node is None:
        return items
    return items + fuse_items(c, what, fu.judge_read(c.reply, node.data, offset, size))


def readdir_all(s: FsSession, nodeid: int, fh: int, rel: str, size: int,
                split: int = 0, indirect: bool = False) -> list[Item]:
    """READDIR from offset 0, each time from the last entry's off, until an empty page;
    then the whole listing against the directory."""
    items: list[Item] = []
    ents: list[fu.Dirent] = []
    off = 0
    for page in range(64):
        what = f"READDIR {rel!r} size {size} from off {off} (page {page})"
        c, more = judged_call(s, what, fu.READDIR, nodeid, fu.read_in(fh, off, size),
                              16 + size, split=split, indirect=indirect)
        items += more
        if c.reply is None:
            return items
        judged, got = fu.judge_readdir_page(c.reply, size)
        items += fuse_items(c, what, judged)
        if judged or not got:
            break
        ents += got
        off = got[-1].off
    else:
        items.append(("PVSPEC-FUSE-READDIR", False, f"READDIR {rel!r}: still entries after "
                      f"64 pages of {size} bytes", ()))
        return items
    node = fs_tree.node(s.shared, rel)
    if node is not None and not any(r == "PVSPEC-FUSE-READDIR" and not ok
                                    for r, ok, _, _ in items):
        items += [(rule, ok, f"READDIR {rel!r} size {size}: {d}", ())
                  for rule, ok, d in fu.judge_listing(ents, node,
                                                      fs_tree.children(s.shared, rel))]
    return items


# --- drawn cases -------------------------------------------------------------------------

class _Found(Exception):
    def __init__(self, items: list[Item]) -> None:
        super().__init__(len(items))
        self.items = items


def search(t: Target, check: str, strategy: st.SearchStrategy[Any],
           body: Callable[[Any], list[Item]]) -> list[Item]:
    """Run ``body`` on drawn cases; passes folded per rule, a failure (not a known
    deviation) shrunk to a minimal case and reported with its items; a known deviation
    reported as first seen (the search goes on past it)."""
    from conformance.vhost_user.explore import PROFILE

    passes: Counter[str] = Counter()
    last: list[Item] = []
    known: dict[str, Item] = {}

    @settings(max_examples=EXAMPLES.get(PROFILE.get(), EXAMPLES["ci"]), derandomize=True,
              database=None, deadline=None, suppress_health_check=list(HealthCheck),
              phases=(Phase.explicit, Phase.generate, Phase.shrink))
    @given(strategy)
    def run(case: Any) -> None:
        items = body(case)
        for item in items:
            passes[item[0]] += item[1]
            if not item[1]:
                known.setdefault(item[0], item)
        if failed(t, check, items):
            last[:] = items
            raise _Found(items)

    found: list[Item] = []
    try:
        run()
    except _Found as e:
        found = [i for i in e.items if not i[1]]
    except Flaky:
        found = [(r, ok, f"{d} (first seen; not repeated on replay)", tr)
                 for r, ok, d, tr in last if not ok]
    out: list[Item] = [(rule, True, f"held on {n} drawn requests", ())
                       for rule, n in sorted(passes.items()) if n]
    shown = {i[0] for i in found}
    return out + found + [i for rule, i in known.items() if rule not in shown]


# --- the checks ----------------------------------------------------------------------------

def session_check(name: str, body: Callable[[ck.Ctx, Any], None],
                  session: type[FsSession] | None = None) -> ck.Check:
    """A check running ``body`` on the run's one session (of class ``session``, default
    :class:`FsSession`), handed on to the next check when ``body`` returns; closed when it
    raises (the back-end may be left in any state)."""
    cls = session or FsSession

    def check(t: Target) -> list[ck.Result]:
        c = ck.Ctx(t, name)
        s = cls.take(t)
        try:
            body(c, s)
        except BaseException:
            s.close()
            raise
        s.give_back()
        return c.results

    check.__name__ = check.__qualname__ = f"check_{name.replace('-', '_')}"
    return check


def _init(c: ck.Ctx, s: FsSession) -> None:
    """Negotiation and FUSE_INIT (sent when the session opened)."""
    c.add("VIRTIO-6.2-DEV-OFFER-VERSION-1", F.has(s.offered, F.VERSION_1),
          f"offered {s.offered:#x}")
    c.add("VHOST-USER-REPLY", True, "every reply of negotiation and queue setup "
          f"(protocol features {s.packed:#x}, {s.nq} queues)")
    if s.config:
        for rule, ok, detail in fu.check_config(s.config):
            c.add(rule, ok, detail, ck.ev.text_ops([f"config {s.config.hex()}"], "config"))
    else:
        c.skip("VIRTIO-5.11.4.2-DEV-NUM-REQUEST-QUEUES", "the back-end offers no config "
               "space (no CONFIG protocol feature): over vhost-user its front-end VMM then "
               "presents tag and num_request_queues", NotJudged.PLATFORM)
    c.skip("VIRTIO-5.11.4.2-DEV-NOTIFY-BUF-SIZE", "VIRTIO_FS_F_NOTIFICATION not offered"
           if not F.has(s.offered, fu.NOTIFICATION) else "no FUSE notify message is "
           "provoked", NotJudged.NOT_OFFERED if not F.has(s.offered, fu.NOTIFICATION)
           else NotJudged.NOT_IMPLEMENTED)
    for rule in ("VIRTIO-5.11.6.4.1-DEV-DAX-REGION-0", "VIRTIO-5.11.6.4.1-DEV-DAX-OVERLAP",
                 "VIRTIO-5.11.6.4.1-DEV-DAX-BOUNDS"):
        c.skip(rule, "no DAX window: vhost-user as this front-end speaks it maps no shared "
               "memory region of the back-end", NotJudged.NOT_OFFERED)
    c.skip("VIRTIO-5.11.6.2.1-DEV-HIPRIO-NOT-PAUSED", "needs a request the back-end holds "
           "on a request queue (e.g. SETLKW on a held lock, with -o posix_lock) while "
           "FORGETs go on the hiprio queue: not sent by this suite", NotJudged.NOT_IMPLEMENTED)
    init = s.init
    assert init is not None
    add_all(c, ring_items(s.target, init, "FUSE_INIT"))
    if init.reply is None:
        return
    hdr, _ = fu.judge_header(init.unique, init.written, init.used_len)
    add_all(c, fuse_items(init, "FUSE_INIT", hdr))
    major = int.from_bytes(init.reply.data[:4], "little") if len(init.reply.data) >= 8 else 0
    minor = int.from_bytes(init.reply.data[4:8], "little") if major else 0
    c.add("PVSPEC-RING-PROGRESS", init.reply.error == 0 and major == 7,
          f"FUSE_INIT: error {init.reply.error}, version {major}.{minor}",
          () if major == 7 else init.step.evidence())


FILES = tuple(p for p, spec in fs_tree.TREE.items() if spec is not None
              and p != fs_tree.SCRATCH)
DIRS = ("", *(p for p, spec in fs_tree.TREE.items() if spec is None))
_NAME_CHARS = st.characters(codec="utf-8", exclude_characters="/\0")


def _lookup(c: ck.Ctx, s: FsSession) -> None:
    """LOOKUP of every name of the tree (GETATTR agrees), of drawn missing names (ENOENT);
    FORGET of every lookup on the hiprio queue."""
    w = Walker(s)
    for rel in (*FILES, *DIRS[1:]):
        nodeid, items = w.lookup(rel)
        add_all(c, items)
        if nodeid:
            what = f"GETATTR {rel!r}"
            call, items = judged_call(s, what, fu.GETATTR, nodeid, fu.GETATTR_IN.pack(0, 0, 0),
                                      16 + fu.ATTR_OUT_SIZE)
            add_all(c, items)
            node = fs_tree.node(s.shared, rel)
            if call.reply is not None and node is not None:
                add_all(c, fuse_items(call, what, fu.judge_getattr(call.reply, node,
                                                                   w.attrs.get(rel))))
    taken = {os.path.basename(p) for p in fs_tree.TREE}

    def missing(case: tuple[str, str, int]) -> list[Item]:
        parent, name, split = case
        rel = f"{parent}/{name}" if parent else name
        _, items = w.lookup(rel, split)
        return items

    names = st.text(_NAME_CHARS, min_size=1, max_size=40).filter(
        lambda n: n not in taken and n not in (".", "..") and len(os.fsencode(n)) <= 255)
    add_all(c, search(s.target, c.check, st.tuples(st.sampled_from(DIRS), names,
                                                   st.sampled_from((0, 8, 16, 17))),
                      missing))
    add_all(c, w.forget_all())


def _read(c: ck.Ctx, s: FsSession) -> None:
    """OPEN every file, READ at drawn offsets and sizes (around 0, page boundaries and
    the file's end, past it), RELEASE."""
    w = Walker(s)
    handles: dict[str, tuple[int, int]] = {}
    for rel in FILES:
        nodeid, items = w.lookup(rel)
        add_all(c, items)
        if nodeid:
            fh, items = open_file(s, nodeid, f"OPEN {rel!r}")
            add_all(c, items)
            if fh is not None:
                handles[rel] = (nodeid, fh)
    if not handles:
        return

    @st.composite
    def cases(draw: st.DrawFn) -> tuple[str, int, int, int, bool]:
        rel = draw(st.sampled_from(sorted(handles)))
        size = os.path.getsize(os.path.join(s.shared, rel))
        marks = sorted({0, 1, 4095, 4096, 4097, size - 1, size, size + 1, size + 4096})
        off = draw(st.one_of(st.sampled_from([m for m in marks if m >= 0]),
                             st.integers(0, size + 8192), st.integers(0, 1 << 40)))
        n = draw(st.one_of(st.sampled_from((0, 1, 7, 8, 4096, 4097, max(0, size - off),
                                            max(0, size - off) + 1)),
                           st.integers(0, MAX_READ)))
        split = draw(st.sampled_from((0, 16, 17)))
        return rel, off, min(n, MAX_READ), split, draw(st.booleans())

    def one(case: tuple[str, int, int, int, bool]) -> list[Item]:
        rel, off, n, split, indirect = case
        nodeid, fh = handles[rel]
        return read(s, nodeid, fh, rel, off, n, split, indirect)

    add_all(c, search(s.target, c.check, cases(), one))
    for nodeid, fh in handles.values():
        add_all(c, release(s, nodeid, fh))
    add_all(c, w.forget_all())


def _write(c: ck.Ctx, s: FsSession) -> None:
    """WRITE to the scratch file, READ it back; with the reads of fs-read this judges
    5.11.6.4.1's READ-and-WRITE rule (no DAX window here)."""
    w = Walker(s)
    rel = fs_tree.SCRATCH
    nodeid, items = w.lookup(rel)
    add_all(c, items)
    if not nodeid:
        return
    what = f"OPEN {rel!r} read-write"
    call, items = judged_call(s, what, fu.OPEN, nodeid, fu.OPEN_IN.pack(os.O_RDWR, 0),
                              16 + fu.OPEN_OUT.size)
    add_all(c, items)
    if call.reply is None:
        return
    judged, fh = fu.judge_open(call.reply)
    add_all(c, fuse_items(call, what, judged))
    if fh is None:
        return
    ok_all: list[bool] = []
    data = fs_tree.pattern(6000, 99)
    for off, n in ((0, 1), (4095, 2), (100, 5000)):
        what = f"WRITE {rel!r} offset {off} size {n}"
        payload = data[off: off + n]
        call, items = judged_call(s, what, fu.WRITE, nodeid,
                                  fu.WRITE_IN.pack(fh, off, n, 0, 0, 0, 0) + payload,
                                  16 + fu.WRITE_OUT.size)
        wi = fuse_items(call, what, fu.judge_write(call.reply, n)) if call.reply else []
        add_all(c, items + wi)
        ri = read(s, nodeid, fh, rel, max(0, off - 3), n + 6)
        add_all(c, ri)
        ok_all.append(all(ok for _, ok, _, _ in items + wi + ri) and bool(wi))
    c.add("VIRTIO-5.11.6.4.1-DEV-READ-WRITE", all(ok_all),
          f"{sum(ok_all)} of {len(ok_all)} WRITEs served and read back (no DAX window)")
    add_all(c, release(s, nodeid, fh))
    add_all(c, w.forget_all())


def _readdir(c: ck.Ctx, s: FsSession) -> None:
    """OPENDIR every directory, READDIR it whole with drawn page sizes, RELEASEDIR."""
    w = Walker(s)
    handles: dict[str, tuple[int, int]] = {}
    for rel in DIRS:
        nodeid, items = (fu.ROOT_ID, []) if rel == "" else w.lookup(rel)
        add_all(c, items)
        if nodeid:
            fh, items = open_file(s, nodeid, f"OPENDIR {rel!r}", directory=True)
            add_all(c, items)
            if fh is not None:
                handles[rel] = (nodeid, fh)
    longest = fu.dirent_size(max(len(os.path.basename(p)) for p in fs_tree.TREE))

    def one(case: tuple[str, int, int, bool]) -> list[Item]:
        rel, size, split, indirect = case
        nodeid, fh = handles[rel]
        return readdir_all(s, nodeid, fh, rel, size, split, indirect)

    if handles:
        sizes = st.one_of(st.sampled_from((longest, longest + 1, 64, 4096)),
                          st.integers(longest, 8192))
        add_all(c, search(s.target, c.check, st.tuples(st.sampled_from(sorted(handles)),
                                                       sizes, st.sampled_from((0, 16, 40)),
                                                       st.booleans()),
                          one))
    if "" in handles:
        # below one record: FUSE defines no answer (docs/findings.md V1: virtiofsd sends an
        # empty page, which reads as the end of the directory); the ring and the out header
        # are judged, the listing is not
        nodeid, fh = handles[""]
        _, items = judged_call(s, "READDIR '' size 8 (less than one record)", fu.READDIR,
                               nodeid, fu.read_in(fh, 0, 8), 16 + 8)
        add_all(c, items)
    for nodeid, fh in handles.values():
        add_all(c, release(s, nodeid, fh, directory=True))
    add_all(c, w.forget_all())


def _used_len(c: ck.Ctx, s: FsSession) -> None:
    """2.7.8.2 with two poisons: LOOKUP, GETATTR, READ and READDIR each run twice, the
    reply buffer poisoned 0xA5, then 0x5A; a byte within used.len the device did not
    write keeps the poison and differs."""
    w = Walker(s)
    nodeid, items = w.lookup("page.bin")
    add_all(c, items)
    if not nodeid:
        return
    fh, items = open_file(s, nodeid, "OPEN 'page.bin'")
    add_all(c, items)
    dfh, ditems = open_file(s, fu.ROOT_ID, "OPENDIR root", directory=True)
    add_all(c, ditems)
    cases: list[tuple[str, int, int, bytes, int]] = [
        ("LOOKUP 'hello.txt'", fu.LOOKUP, fu.ROOT_ID, fu.name_arg(b"hello.txt"),
         16 + fu.ENTRY_OUT_SIZE),
        ("GETATTR 'page.bin'", fu.GETATTR, nodeid, fu.GETATTR_IN.pack(0, 0, 0),
         16 + fu.ATTR_OUT_SIZE)]
    if fh is not None:
        cases.append(("READ 'page.bin' 1000 at 4000", fu.READ, nodeid,
                      fu.read_in(fh, 4000, 1000), 16 + 1000))
    if dfh is not None:
        cases.append(("READDIR root", fu.READDIR, fu.ROOT_ID, fu.read_in(dfh, 0, 4096),
                      16 + 4096))
    for what, op, nid, body, size in cases:
        calls = []
        unique = s.next_unique()  # the same both times (free again once answered)
        for p in POISONS:
            call, items = judged_call(s, f"{what} poison {p:#x}", op, nid, body, size,
                                      poison=p, unique=unique)
            add_all(c, items)
            calls.append(call)
            if op == fu.LOOKUP and call.reply is not None and call.reply.error == 0 and \
                    len(call.reply.data) >= fu.ENTRY_OUT.size:
                w.lookups[fu.ENTRY_OUT.unpack(call.reply.data[: fu.ENTRY_OUT.size])[0]] += 1
        a, b = calls
        if a.used_len is None or b.used_len is None:
            continue
        n = min(a.used_len, b.used_len, size)
        diff = [i for i in range(n) if a.written[i] != b.written[i]]
        c.add("VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES", not diff and a.used_len == b.used_len,
              f"{what}: used.len {a.used_len}/{b.used_len}; " + (
                  f"{len(diff)} bytes kept the poison (first {diff[0]})" if diff else
                  "all written"), a.step.evidence() + b.step.evidence() if diff else ())
    if fh is not None:
        add_all(c, release(s, nodeid, fh))
    if dfh is not None:
        add_all(c, release(s, fu.ROOT_ID, dfh, directory=True))
    add_all(c, w.forget_all())


FS_CHECKS: dict[str, ck.Check] = {
    "fs-fuse-init": session_check("fs-fuse-init", _init),
    "fs-lookup": session_check("fs-lookup", _lookup),
    "fs-read": session_check("fs-read", _read),
    "fs-write": session_check("fs-write", _write),
    "fs-readdir": session_check("fs-readdir", _readdir),
    "fs-used-len": session_check("fs-used-len", _used_len),
}
_REPLY = ("PVSPEC-FUSE-UNIQUE", "PVSPEC-FUSE-OUT-LEN", "PVSPEC-FUSE-ERRNO")
FS_COVERS: dict[str, tuple[str, ...]] = {
    "fs-fuse-init": (*ck.STEP_RULES, "VIRTIO-6.2-DEV-OFFER-VERSION-1", "VHOST-USER-REPLY",
                     *_REPLY,
                     "VIRTIO-5.11.4.2-DEV-NUM-REQUEST-QUEUES"),
    "fs-lookup": (*ck.STEP_RULES, *_REPLY, "PVSPEC-FUSE-LOOKUP", "PVSPEC-FUSE-LOOKUP-MISSING",
                  "PVSPEC-FUSE-GETATTR"),
    "fs-read": (*ck.STEP_RULES, *_REPLY, "PVSPEC-FUSE-LOOKUP", "PVSPEC-FUSE-OPEN",
                "PVSPEC-FUSE-READ", "PVSPEC-FUSE-RELEASE"),
    "fs-write": (*ck.STEP_RULES, *_REPLY, "PVSPEC-FUSE-OPEN", "PVSPEC-FUSE-WRITE",
                 "PVSPEC-FUSE-READ", "VIRTIO-5.11.6.4.1-DEV-READ-WRITE"),
    "fs-readdir": (*ck.STEP_RULES, *_REPLY, "PVSPEC-FUSE-OPEN", "PVSPEC-FUSE-READDIR",
                   "PVSPEC-FUSE-RELEASE"),
    "fs-used-len": (*ck.STEP_RULES, *_REPLY),
}
ck.FS_CHECKS.update(FS_CHECKS)
ck.COVERS.update(FS_COVERS)
