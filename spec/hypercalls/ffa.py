"""Arm FF-A v1.1 memory management (DEN0077A v1.1) as a codec over the model's
memory-transaction calls.

The model's MEM_SHARE / MEM_LEND / MEM_DONATE / MEM_RETRIEVE / MEM_RELINQUISH /
MEM_RECLAIM (:mod:`spec.hypercalls.abi`) take a frame range, a borrower mask and rights in
registers.  Real FF-A puts a *memory transaction descriptor* in the caller's TX buffer,
answers FFA_SUCCESS with a 64-bit handle split over w2 (low half) and w3 (high half), and
fails as FFA_ERROR with the error code in w2.  This module is the one place that says how
the two correspond, so a target that speaks FF-A is judged by the model:

* :data:`FUNCTIONS`, :data:`ERRORS` -- the function ids and error codes;
* :data:`LAYOUTS` -- the v1.1 descriptor layouts as data, each with its table;
* :func:`parse_transaction` / :func:`encode_descriptor` (and the relinquish pair) --
  bytes to a typed :class:`Descriptor` or the :class:`Violation` FF-A requires, and back;
* :func:`to_model` -- a parsed descriptor as the model's call, or :class:`Inexpressible`
  when the model has no such transaction (never an approximation);
* :func:`encode` -- a model call as (registers, TX-buffer bytes);
* :func:`decode` -- a target's answer as a :class:`Reading`, like ``xen.decode``;
* :class:`Mailbox` and its functions -- the RX/TX buffer rules.
* :func:`read_one` / :func:`one_descriptor` and :func:`answer_regs` -- the
  single-receiver, single-constituent send and the answer to it, on concrete or symbolic
  bytes and registers, for the proofs through this codec (:mod:`spec.prove`, targets
  ``ffa:<row>``); every descriptor field is read and written through
  :mod:`spec.hypercalls.guest_memory`, by the general parser too.

Choices this codec makes (FF-A leaves them to the system):

* **Endpoint ids**: model VM ``v`` is FF-A endpoint ``v + 1``.  Id 0 is the hypervisor's
  own (Hafnium numbers VMs from 1 for this reason) and ids with bit 15 set are
  secure-world partitions; neither is a model VM.  The model's borrower mask is 16 bits
  wide, so endpoints 1..16 are the expressible ones.
* **Frames**: a model guest frame ``g`` is the 4 KiB granule at IPA ``g * 4096``; FF-A
  counts memory in 4 KiB pages whatever the translation granule (DEN0077A Table 10.14).
* **One range**: a model transaction covers one contiguous frame range.  Constituents
  that touch (in any order) coalesce; anything else is :class:`Inexpressible`.
* **Rights**: FF-A data access RO is the model's R, RW is R|W.  A sender gives no
  instruction access (Hafnium rejects any on a send, and 10.10.3 makes a share
  non-executable), so a model call whose rights include X has no FF-A form.  A donation
  carries no rights (the sender must leave data access unspecified): the model's donation
  is read with rights R|W (:data:`DONATE_PERM`), and a model donation with other rights
  has no FF-A form.
* **Attributes**: the model's memory is normal write-back inner-shareable memory
  (:data:`NORMAL_WB_INNER`), the attributes a share or a multi-borrower lend must name;
  device memory or other cacheability has no model form.  A lend to one borrower and a
  donation leave the attributes unspecified (0), as the sender must there.
* **Retrieval address**: an FF-A retrieve request does not say where the borrower wants
  the memory (its composite offset is 0); the FF-A instance maps it and says where in
  FFA_MEM_RETRIEVE_RESP.  The model's MEM_RETRIEVE ``base`` is therefore the target's
  choice, read from the response (:attr:`Reading.base`).
* **Fragmentation and memory zeroing** are not modelled: a fragmented transaction and
  the zero-memory flags have no model form.

Facts checked against Linux ``include/linux/arm_ffa.h``, Hafnium
(``inc/vmapi/hf/ffa.h``, ``src/ffa_memory.c``, ``src/api.c``), Xen
(``xen/arch/arm/tee/ffa_shm.c``, ``ffa_rxtx.c``) and the arm-ffa crate's v1.1 layouts;
tables and sections are those of DEN0077A v1.1 (EAC0/REL0 share the numbering).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from spec import logic
from spec.hypercalls.abi import BY_NAME, HV_ERRORS, SVE_HINT  # SVE: a hint FF-A ids ignore
from spec.hypercalls.codec import Call, DecodeError
from spec.hypercalls.guest_memory import Memory, read_field, write_bytes, write_field

__all__ = [
    "DONATE_PERM", "ERRORS", "EXPRESSES", "FUNCTIONS", "LAYOUTS", "MAILBOX_RULES",
    "NORMAL_WB_INNER", "ONE_LENGTH", "PAGE", "RULES", "SEND_EXPRESSES", "SVE_HINT", "Access",
    "Constituent", "Descriptor", "Field", "Inexpressible", "Layout", "Mailbox", "ModelCall",
    "Reading", "Relinquish", "Request", "Rule", "Violation", "answer_reads_back", "answer_regs",
    "base_name", "decode", "decode_one", "decode_request", "descriptor_memory", "encode",
    "encode_descriptor", "encode_relinquish", "endpoint_of", "expresses", "function_name",
    "handle_of", "one_descriptor", "one_reads_back", "parse_relinquish", "parse_transaction",
    "read_one", "rows", "rx_release", "rxtx_map", "rxtx_unmap", "split_handle", "to_model",
    "vm_of",
]

STANDARD = "Arm FF-A DEN0077A v1.1"
VERSION = (1, 1)
PAGE = 4096  # FF-A counts memory in 4 KiB pages (Table 10.14)
_M32 = 0xFFFF_FFFF
_M64 = (1 << 64) - 1

# --- function ids (SMCCC fast calls of the standard secure service entity, 0x60..) --------


def _fid(number: int, smc64: bool = False) -> int:
    return 0x8400_0000 | (int(smc64) << 30) | number


FUNCTIONS: dict[str, int] = {
    "FFA_ERROR": _fid(0x60),
    "FFA_SUCCESS_32": _fid(0x61), "FFA_SUCCESS_64": _fid(0x61, True),
    "FFA_VERSION": _fid(0x63),
    "FFA_FEATURES": _fid(0x64),
    "FFA_RX_RELEASE": _fid(0x65),
    "FFA_RXTX_MAP_32": _fid(0x66), "FFA_RXTX_MAP_64": _fid(0x66, True),
    "FFA_RXTX_UNMAP": _fid(0x67),
    "FFA_ID_GET": _fid(0x69),
    "FFA_MEM_DONATE_32": _fid(0x71), "FFA_MEM_DONATE_64": _fid(0x71, True),
    "FFA_MEM_LEND_32": _fid(0x72), "FFA_MEM_LEND_64": _fid(0x72, True),
    "FFA_MEM_SHARE_32": _fid(0x73), "FFA_MEM_SHARE_64": _fid(0x73, True),
    "FFA_MEM_RETRIEVE_REQ_32": _fid(0x74), "FFA_MEM_RETRIEVE_REQ_64": _fid(0x74, True),
    "FFA_MEM_RETRIEVE_RESP": _fid(0x75),
    "FFA_MEM_RELINQUISH": _fid(0x76),
    "FFA_MEM_RECLAIM": _fid(0x77),
    "FFA_MEM_FRAG_RX": _fid(0x7A),
    "FFA_MEM_FRAG_TX": _fid(0x7B),
}
BY_ID: dict[int, str] = {v: k for k, v in FUNCTIONS.items()}
assert len(BY_ID) == len(FUNCTIONS)

# Where each interface is stated: chapter 13 (setup and discovery), chapter 16 (memory
# management).  Sub-section numbers were not checked against the text; the chapters and
# the tables named here were (Hafnium and the arm-ffa crate cite them).
CLAUSES: dict[str, str] = {
    "FFA_ERROR": "DEN0077A v1.1 ch. 13 FFA_ERROR; the error status codes table",
    "FFA_SUCCESS": "DEN0077A v1.1 ch. 13 FFA_SUCCESS",
    "FFA_VERSION": "DEN0077A v1.1 ch. 13 FFA_VERSION",
    "FFA_FEATURES": "DEN0077A v1.1 ch. 13 FFA_FEATURES",
    "FFA_RX_RELEASE": "DEN0077A v1.1 ch. 13 FFA_RX_RELEASE (RX buffer ownership)",
    "FFA_RXTX_MAP": "DEN0077A v1.1 ch. 13 FFA_RXTX_MAP (Table 13.27 endpoint RX/TX "
                    "descriptor)",
    "FFA_RXTX_UNMAP": "DEN0077A v1.1 ch. 13 FFA_RXTX_UNMAP",
    "FFA_ID_GET": "DEN0077A v1.1 ch. 13 FFA_ID_GET",
    "FFA_MEM_DONATE": "DEN0077A v1.1 ch. 16 FFA_MEM_DONATE; descriptor Table 10.20",
    "FFA_MEM_LEND": "DEN0077A v1.1 ch. 16 FFA_MEM_LEND; descriptor Table 10.20",
    "FFA_MEM_SHARE": "DEN0077A v1.1 ch. 16 FFA_MEM_SHARE; descriptor Table 10.20",
    "FFA_MEM_RETRIEVE_REQ": "DEN0077A v1.1 ch. 16 FFA_MEM_RETRIEVE_REQ; Table 10.20",
    "FFA_MEM_RETRIEVE_RESP": "DEN0077A v1.1 ch. 16 FFA_MEM_RETRIEVE_RESP; Table 10.20",
    "FFA_MEM_RELINQUISH": "DEN0077A v1.1 ch. 16 FFA_MEM_RELINQUISH; Table 16.25",
    "FFA_MEM_RECLAIM": "DEN0077A v1.1 ch. 16 FFA_MEM_RECLAIM",
    "FFA_MEM_FRAG_RX": "DEN0077A v1.1 ch. 16 FFA_MEM_FRAG_RX",
    "FFA_MEM_FRAG_TX": "DEN0077A v1.1 ch. 16 FFA_MEM_FRAG_TX",
}


def function_name(w0: int) -> str | None:
    """The FF-A function a w0 names: the low 32 bits, with SMCCC 1.3's SVE hint (bit 16)
    ignored as the caller's hint it is (DEN0028 1.3 2.5)."""
    return BY_ID.get(w0 & _M32 & ~SVE_HINT)


def base_name(name: str) -> str:
    """A function's name without its calling-convention suffix."""
    return name.removesuffix("_32").removesuffix("_64")


# --- error codes (DEN0077A v1.1, the "Error status codes" table) ------------------------------
ERRORS: dict[str, int] = {
    "NOT_SUPPORTED": -1, "INVALID_PARAMETERS": -2, "NO_MEMORY": -3, "BUSY": -4,
    "INTERRUPTED": -5, "DENIED": -6, "RETRY": -7, "ABORTED": -8, "NO_DATA": -9,
}
ERROR_NAME = {v: k for k, v in ERRORS.items()}
NOT_SUPPORTED, INVALID, NO_MEMORY, BUSY, DENIED = (
    ERRORS["NOT_SUPPORTED"], ERRORS["INVALID_PARAMETERS"], ERRORS["NO_MEMORY"],
    ERRORS["BUSY"], ERRORS["DENIED"])
# the model's error space is FF-A's numbering (abi.py): same name, same code
assert all(ERRORS[n] == c for n, c in HV_ERRORS.items() if n != "SUCCESS")

# Per FF-A code: the model errors it stands for (the same numbering).
EXPRESSES: dict[int, frozenset[str]] = {
    code: frozenset({name}) for name, code in ERRORS.items() if name in HV_ERRORS}
# One difference of reading, on the sends only: a frame range past the caller's memory is
# INVALID_PARAMETERS to the model (a bad frame number) and memory the caller does not own
# to an FF-A instance (DENIED: Hafnium's and Xen's sender-state checks), so there DENIED
# also stands for INVALID_PARAMETERS.
SEND_EXPRESSES: dict[int, frozenset[str]] = {
    **EXPRESSES, DENIED: frozenset({"DENIED", "INVALID_PARAMETERS"})}


def expresses(code: int, row: str) -> frozenset[str]:
    """The model errors an FF-A error ``code`` in the answer to ``row`` stands for."""
    return (SEND_EXPRESSES if row in KIND_OF_ROW else EXPRESSES).get(code, frozenset())


# --- descriptor layouts (little-endian, packed) -------------------------------------------


@attrs.frozen
class Field:
    name: str
    offset: int
    size: int
    meaning: str
    mbz: bool = False  # reserved, must be zero


@attrs.frozen
class Layout:
    name: str
    table: str  # where DEN0077A v1.1 states it
    size: int  # fixed part, bytes
    fields: tuple[Field, ...]
    # by name, built once: the oracle reads every field of every descriptor through it
    by_name: dict[str, Field] = attrs.field(init=False, eq=False, repr=False)

    @by_name.default
    def _by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    def field(self, name: str) -> Field:
        return self.by_name[name]

    def check(self) -> None:
        """The fields tile the fixed part exactly: no gap, no overlap."""
        at = 0
        for f in self.fields:
            assert f.offset == at, (self.name, f.name)
            at += f.size
        assert at == self.size, self.name


TRANSACTION = Layout(
    "memory transaction descriptor", "Table 10.20 (share, lend, donate, retrieve)", 48, (
        Field("sender", 0, 2, "endpoint id of the owner"),
        Field("attributes", 2, 2, "memory region attributes (Table 10.18)"),
        Field("flags", 4, 4, "transaction flags"),
        Field("handle", 8, 8, "memory region handle (this codec sends 0 in a send)"),
        Field("tag", 16, 8, "implementation-defined tag"),
        Field("emad_size", 24, 4, "size of each endpoint memory access descriptor (16)"),
        Field("emad_count", 28, 4, "number of endpoint memory access descriptors"),
        Field("emad_offset", 32, 4, "16-byte aligned offset of the first one"),
        Field("reserved", 36, 12, "reserved", mbz=True),
    ))
PERMISSIONS = Layout(
    "memory access permissions descriptor", "Table 10.15", 4, (
        Field("endpoint", 0, 2, "endpoint the permissions apply to"),
        Field("permissions", 2, 1, "bits 1:0 data access (0 unspecified, 1 RO, 2 RW, "
              "3 reserved), bits 3:2 instruction access (0 unspecified, 1 NX, 2 X, "
              "3 reserved), bits 7:4 reserved"),
        Field("flags", 3, 1, "retrieve flags (bit 0: non-retrieval borrower); zero on "
              "a send"),
    ))
EMAD = Layout(
    "endpoint memory access descriptor", "Table 10.16", 16, (
        Field("permissions", 0, 4, "memory access permissions descriptor (Table 10.15)"),
        Field("composite_offset", 4, 4, "offset of the composite memory region "
              "descriptor from the start of the transaction descriptor; 0: none"),
        Field("reserved", 8, 8, "reserved", mbz=True),
    ))
COMPOSITE = Layout(
    "composite memory region descriptor", "Table 10.13", 16, (
        Field("total_pages", 0, 4, "4 KiB pages in the region: the constituents' sum"),
        Field("count", 4, 4, "number of constituent descriptors that follow"),
        Field("reserved", 8, 8, "reserved", mbz=True),
    ))
CONSTITUENT = Layout(
    "constituent memory region descriptor", "Table 10.14", 16, (
        Field("address", 0, 8, "base IPA, 4 KiB aligned"),
        Field("pages", 8, 4, "4 KiB pages"),
        Field("reserved", 12, 4, "reserved", mbz=True),
    ))
RELINQUISH = Layout(
    "memory region relinquish descriptor", "Table 16.25", 16, (
        Field("handle", 0, 8, "handle of the memory region"),
        Field("flags", 8, 4, "bit 0 zero memory after relinquish, bit 1 time slicing"),
        Field("endpoint_count", 12, 4, "number of 16-bit endpoint ids that follow"),
    ))
LAYOUTS: tuple[Layout, ...] = (TRANSACTION, EMAD, PERMISSIONS, COMPOSITE, CONSTITUENT,
                               RELINQUISH)
for _l in LAYOUTS:
    _l.check()

# Memory region attributes (Table 10.18): bits 15:7 MBZ; bit 6 NS, MBZ in a send (10.10.4.1);
# bits 5:4 type (0 unspecified, 1 device, 2 normal, 3 reserved); bits 3:2 cacheability
# (normal: 1 non-cacheable, 3 write-back, 0 and 2 reserved); bits 1:0 shareability
# (0 non-shareable, 1 reserved, 2 outer, 3 inner).
ATTR_MBZ = 0xFF80
ATTR_NS = 1 << 6
NORMAL_WB_INNER = 2 << 4 | 3 << 2 | 3
# Transaction flags on a send: bit 0 zero memory before mapping (not with a share), bit 1
# time slicing; the rest MBZ (Hafnium rejects every other bit).  In a retrieve, bits 4:3
# name the transaction type (0 any, 1 share, 2 lend, 3 donate).
FLAG_CLEAR, FLAG_TIME_SLICE = 1, 2
SEND_FLAGS = FLAG_CLEAR | FLAG_TIME_SLICE
TYPE_SHIFT = 3
KIND_OF_TYPE = {1: "share", 2: "lend", 3: "donate"}
DATA_UNSPECIFIED, DATA_RO, DATA_RW = 0, 1, 2
INSTR_UNSPECIFIED, INSTR_NX, INSTR_X = 0, 1, 2
DONATE_PERM = 3  # R|W: what the model's reading of a donation grants

SendKind = Literal["share", "lend", "donate"]
Kind = Literal["share", "lend", "donate", "retrieve_req", "retrieve_resp"]
SEND_KINDS = ("share", "lend", "donate")
ROW_OF_KIND = {"share": "MEM_SHARE", "lend": "MEM_LEND", "donate": "MEM_DONATE"}
KIND_OF_ROW: dict[str, SendKind] = {"MEM_SHARE": "share", "MEM_LEND": "lend",
                                     "MEM_DONATE": "donate"}
FUNCTION_OF_KIND: dict[SendKind, str] = {"share": "FFA_MEM_SHARE", "lend": "FFA_MEM_LEND",
                    "donate": "FFA_MEM_DONATE"}


# --- the rules a descriptor must satisfy --------------------------------------------------
@attrs.frozen
class Rule:
    id: str
    codes: frozenset[int]  # the FF-A errors the standard allows for a breach
    clause: str
    text: str


def _rule(id: str, text: str, clause: str, *codes: int) -> Rule:
    return Rule(id, frozenset(codes or (INVALID,)), clause, text)


RULES: dict[str, Rule] = {r.id: r for r in (
    _rule("length_past_buffer", "the stated length runs past the TX buffer",
          "ch. 16 FFA_MEM_SHARE w1/w2; Hafnium api_ffa_mem_send"),
    _rule("fragment_past_total", "the fragment length exceeds the total length",
          "ch. 16 FFA_MEM_SHARE w2"),
    _rule("fragmented", "fragment length below total length, and this instance does not "
          "support fragmented transactions (Xen: NOT_SUPPORTED)",
          "ch. 16 FFA_MEM_FRAG_TX", NOT_SUPPORTED, INVALID),
    _rule("buffer_address", "a buffer other than the TX buffer (w3/w4 non-zero)",
          "ch. 16 FFA_MEM_SHARE w3, w4 (Hafnium: INVALID_PARAMETERS, Xen: "
          "NOT_SUPPORTED)", INVALID, NOT_SUPPORTED),
    _rule("no_tx_buffer", "no RX/TX buffer pair is mapped",
          "ch. 13 FFA_RXTX_MAP (Hafnium: INVALID_PARAMETERS)"),
    _rule("header_past_length", "the 48-byte header runs past the stated length",
          "Table 10.20"),
    _rule("reserved_header", "reserved header bytes 36..47 are not zero", "Table 10.20"),
    _rule("reserved_attributes", "memory region attributes bits 15:7 are not zero",
          "Table 10.18"),
    _rule("ns_bit", "the NS attribute bit is set in a send", "10.10.4.1, Table 10.18"),
    _rule("reserved_encoding", "a reserved memory type, cacheability or shareability",
          "Table 10.18 (Hafnium answers DENIED)", INVALID, DENIED),
    _rule("attributes_for_kind", "a donation or single-borrower lend names a memory type",
          "10.10.4 memory region attributes usage (Hafnium)"),
    _rule("emad_size", "endpoint memory access descriptor size is not 16",
          "Table 10.20, Table 10.16"),
    _rule("emad_offset", "the access descriptor array is not 16-byte aligned at or after "
          "byte 48", "Table 10.20"),
    _rule("no_receivers", "no endpoint memory access descriptor", "Table 10.20"),
    _rule("donate_receivers", "a donation names more than one receiver",
          "ch. 16 FFA_MEM_DONATE"),
    _rule("emad_past_length", "the access descriptors run past the stated length",
          "Table 10.20"),
    _rule("reserved_emad", "reserved bytes of an endpoint memory access descriptor are "
          "not zero", "Table 10.16"),
    _rule("reserved_permissions", "permission bits 7:4 are not zero, or a reserved data "
          "or instruction access value", "Table 10.15"),
    _rule("send_access_flags", "access-descriptor flags set in a send (they are for "
          "retrieval)", "Table 10.15"),
    _rule("receiver_twice", "a receiver is listed twice",
          "Table 10.20 (Hafnium: repeated receiver)"),
    _rule("receiver_is_sender", "the sender lists itself as a receiver",
          "Table 10.20 (Hafnium: no sharing with itself)"),
    _rule("composite_offsets_differ", "receivers name different composite descriptors",
          "Table 10.16 (one region per transaction)"),
    _rule("composite_offset", "the composite descriptor offset is 0, inside the access "
          "descriptors, not 16-byte aligned or past the fragment", "Table 10.16"),
    _rule("retrieve_composite", "a retrieve request names a composite descriptor",
          "Table 10.16 (offset 0: the region the handle names)"),
    _rule("reserved_composite", "reserved bytes of the composite descriptor are not zero",
          "Table 10.13"),
    _rule("constituents_length", "the constituents do not end exactly at the stated "
          "length (count past the buffer or trailing bytes)", "Table 10.13, Table 10.20"),
    _rule("reserved_constituent", "reserved bytes of a constituent are not zero",
          "Table 10.14"),
    _rule("zero_pages", "a constituent or the region has zero pages",
          "Table 10.13, Table 10.14"),
    _rule("unaligned_address", "a constituent address is not 4 KiB aligned",
          "Table 10.14"),
    _rule("address_wraps", "a constituent runs past the top of the address space",
          "Table 10.14"),
    _rule("overlap", "two constituents overlap", "10.11.3.1"),
    _rule("total_pages", "the region's page count is not the sum of its constituents'",
          "Table 10.13"),
    _rule("send_flags", "reserved transaction flags are set", "Table 10.20 flags"),
    _rule("share_clear", "a share asks to zero memory the sender keeps",
          "Table 10.20 flags bit 0"),
    _rule("data_access", "data access the transaction type forbids (share and lend must "
          "give RO or RW, a donation must leave it unspecified)",
          "Table 10.15 (Hafnium ffa_memory_send_validate)"),
    _rule("instruction_access", "instruction access given by a sender (it must leave it "
          "unspecified; a share is NX)", "10.10.3, Table 10.15"),
    _rule("sender_not_caller", "the sender id is not the caller's",
          "Table 10.20 sender (Hafnium: DENIED, Xen: INVALID_PARAMETERS)", INVALID, DENIED),
    _rule("relinquish_length", "the relinquish descriptor runs past the stated length or "
          "the buffer", "Table 16.25"),
    _rule("relinquish_endpoints", "no endpoint, or an endpoint other than the caller",
          "Table 16.25"),
    _rule("relinquish_flags", "reserved relinquish flags are set", "Table 16.25"),
    _rule("reclaim_flags", "reserved reclaim flags are set", "ch. 16 FFA_MEM_RECLAIM w3"),
)}


@attrs.frozen
class Violation:
    """A descriptor or call FF-A requires to fail, with the codes it may fail with."""

    rule: str
    detail: str = ""

    @property
    def codes(self) -> frozenset[int]:
        return RULES[self.rule].codes

    @property
    def clause(self) -> str:
        return RULES[self.rule].clause


@attrs.frozen
class Inexpressible:
    """A well-formed FF-A request the model has no call for (or a model call FF-A has no
    form for): judged by neither side, never approximated."""

    reason: str


# --- typed descriptors ---------------------------------------------------------------------
@attrs.frozen
class Constituent:
    address: int
    pages: int
    reserved: int = 0


@attrs.frozen
class Access:
    """One endpoint memory access descriptor (Table 10.16 with Table 10.15 inside)."""

    endpoint: int
    permissions: int
    flags: int = 0
    composite_offset: int = 0
    reserved: int = 0

    @property
    def data(self) -> int:
        return self.permissions & 3

    @property
    def instruction(self) -> int:
        return (self.permissions >> 2) & 3


@attrs.frozen
class Descriptor:
    """A memory transaction descriptor (Table 10.20) as parsed, down to the bytes that
    carry no field (``gap_*``), so that it re-encodes to exactly the bytes it came from."""

    sender: int
    attributes: int
    flags: int
    handle: int
    tag: int
    receivers: tuple[Access, ...]
    constituents: tuple[Constituent, ...] = ()
    total_pages: int = 0
    emad_size: int = EMAD.size
    emad_offset: int = TRANSACTION.size
    composite_offset: int = 0  # 0: no composite descriptor (a retrieve request)
    composite_reserved: int = 0
    reserved: bytes = bytes(12)
    gap_header: bytes = b""  # between the header and the access descriptors
    gap_composite: bytes = b""  # between the access descriptors and the composite

    @property
    def length(self) -> int:
        if not self.composite_offset:
            return self.emad_offset + self.emad_size * len(self.receivers)
        return self.composite_offset + COMPOSITE.size + CONSTITUENT.size * len(
            self.constituents)


@attrs.frozen
class Relinquish:
    handle: int
    flags: int
    endpoints: tuple[int, ...]


def encode_descriptor(d: Descriptor) -> bytes:
    """The bytes of a descriptor: the exact inverse of :func:`parse_transaction`."""
    out = descriptor_memory(d)
    assert type(out) is bytes
    return out


def descriptor_memory(d: Descriptor) -> Memory:
    """:func:`encode_descriptor` for any field values: bytes for ints, symbolic bytes for
    terms (the counts, offsets and gaps are concrete: they give the shape)."""
    at_emad = TRANSACTION.size + len(d.gap_header)
    at_comp = at_emad + EMAD.size * len(d.receivers) + len(d.gap_composite)
    size = at_emad + EMAD.size * len(d.receivers)
    if d.composite_offset:
        size = at_comp + COMPOSITE.size + CONSTITUENT.size * len(d.constituents)
    out: Memory = bytes(size)
    for name, value in (("sender", d.sender), ("attributes", d.attributes),
                        ("flags", d.flags), ("handle", d.handle), ("tag", d.tag),
                        ("emad_size", d.emad_size), ("emad_count", len(d.receivers)),
                        ("emad_offset", d.emad_offset)):
        out = write_field(out, TRANSACTION.field(name), value)
    out = write_bytes(write_bytes(out, TRANSACTION.field("reserved").offset, d.reserved),
                      TRANSACTION.size, d.gap_header)
    for i, r in enumerate(d.receivers):
        at = at_emad + EMAD.size * i
        for layout, name, value in ((PERMISSIONS, "endpoint", r.endpoint),
                                    (PERMISSIONS, "permissions", r.permissions),
                                    (PERMISSIONS, "flags", r.flags),
                                    (EMAD, "composite_offset", r.composite_offset),
                                    (EMAD, "reserved", r.reserved)):
            out = write_field(out, layout.field(name), value, at)
    if d.composite_offset:
        out = write_bytes(out, at_emad + EMAD.size * len(d.receivers), d.gap_composite)
        for name, value in (("total_pages", d.total_pages), ("count", len(d.constituents)),
                            ("reserved", d.composite_reserved)):
            out = write_field(out, COMPOSITE.field(name), value, at_comp)
        for i, c in enumerate(d.constituents):
            at = at_comp + COMPOSITE.size + CONSTITUENT.size * i
            for name, value in (("address", c.address), ("pages", c.pages),
                                ("reserved", c.reserved)):
                out = write_field(out, CONSTITUENT.field(name), value, at)
    return out


def endpoint_of(vm: int) -> int:
    """The FF-A endpoint id of model VM ``vm``."""
    return vm + 1


def vm_of(endpoint: int) -> int | None:
    """The model VM an FF-A endpoint id stands for, if any (endpoints 1..16)."""
    return endpoint - 1 if 1 <= endpoint <= 16 else None


def _u(fmt: str, buf: bytes, at: int) -> tuple[int, ...]:
    return struct.unpack_from(fmt, buf, at)


def _read(buf: Memory, layout: Layout, at: int, *names: str) -> list[Any]:
    """Fields of the ``layout`` struct at byte ``at``, read as every codec reads guest
    memory (:mod:`spec.hypercalls.guest_memory`)."""
    fields = layout.by_name
    return [read_field(buf, fields[n], at) for n in names]


def parse_transaction(buf: bytes, length: int, kind: Kind) -> Descriptor | Violation:
    """Read and check the memory transaction descriptor in the first ``length`` bytes of
    ``buf``, for a transaction of ``kind``.  Never raises: any bytes give a descriptor or
    the rule they break."""
    if length > len(buf):
        return Violation("length_past_buffer", f"{length} > {len(buf)}")
    if length < TRANSACTION.size:
        return Violation("header_past_length", f"{length} < 48")
    sender, attributes, flags, handle, tag, esize, ecount, eoff = _read(
        buf, TRANSACTION, 0, "sender", "attributes", "flags", "handle", "tag", "emad_size",
        "emad_count", "emad_offset")
    reserved = bytes(buf[36:48])
    send = kind in SEND_KINDS
    if any(reserved):
        return Violation("reserved_header")
    if attributes & ATTR_MBZ:
        return Violation("reserved_attributes", f"{attributes:#06x}")
    if kind != "retrieve_resp" and attributes & ATTR_NS:
        return Violation("ns_bit")
    if esize != EMAD.size:
        return Violation("emad_size", str(esize))
    if ecount == 0:
        return Violation("no_receivers")
    if eoff < TRANSACTION.size or eoff % 16:
        return Violation("emad_offset", str(eoff))
    emad_end = eoff + esize * ecount
    if emad_end > length:
        return Violation("emad_past_length", f"{emad_end} > {length}")
    receivers = []
    for i in range(ecount):
        at = eoff + i * esize
        endpoint, perms, aflags = _read(buf, PERMISSIONS, at, "endpoint", "permissions",
                                        "flags")
        coff, res = _read(buf, EMAD, at, "composite_offset", "reserved")
        a = Access(endpoint, perms, aflags, coff, res)
        if res:
            return Violation("reserved_emad", f"receiver {i}")
        if perms & 0xF0 or a.data == 3 or a.instruction == 3:
            return Violation("reserved_permissions", f"receiver {i}: {perms:#04x}")
        if send and aflags:
            return Violation("send_access_flags", f"receiver {i}")
        receivers.append(a)
    ids = [a.endpoint for a in receivers]
    if len(set(ids)) != len(ids):
        return Violation("receiver_twice", str(ids))
    if send and sender in ids:
        return Violation("receiver_is_sender", str(sender))
    if kind == "donate" and ecount != 1:
        return Violation("donate_receivers", str(ecount))
    coff = receivers[0].composite_offset
    if any(a.composite_offset != coff for a in receivers):
        return Violation("composite_offsets_differ")
    d = Descriptor(sender, attributes, flags, handle, tag, tuple(receivers),
                   emad_size=esize, emad_offset=eoff, composite_offset=coff,
                   reserved=reserved, gap_header=bytes(buf[TRANSACTION.size:eoff]))
    if kind == "retrieve_req":
        if coff:
            return Violation("retrieve_composite", str(coff))
        if length != emad_end:
            return Violation("constituents_length", f"{length} != {emad_end}")
        return d
    if coff == 0 or coff < emad_end or coff % 16 or coff + COMPOSITE.size > length:
        return Violation("composite_offset", str(coff))
    total, count, cres = _read(buf, COMPOSITE, coff, "total_pages", "count", "reserved")
    if cres:
        return Violation("reserved_composite")
    end = coff + COMPOSITE.size + CONSTITUENT.size * count
    if end != length:
        return Violation("constituents_length", f"{count} constituents end at {end}, "
                                                f"length {length}")
    parts = []
    for i in range(count):
        addr, pages, res = _read(buf, CONSTITUENT, coff + COMPOSITE.size
                                 + i * CONSTITUENT.size, "address", "pages", "reserved")
        if res:
            return Violation("reserved_constituent", f"constituent {i}")
        if pages == 0:
            return Violation("zero_pages", f"constituent {i}")
        if addr % PAGE:
            return Violation("unaligned_address", f"constituent {i}: {addr:#x}")
        if addr + pages * PAGE > 1 << 64:
            return Violation("address_wraps", f"constituent {i}")
        parts.append(Constituent(addr, pages, res))
    if total == 0:
        return Violation("zero_pages", "region")
    spans = sorted((c.address, c.address + c.pages * PAGE) for c in parts)
    if any(b[0] < a[1] for a, b in itertools.pairwise(spans)):
        return Violation("overlap")
    if sum(c.pages for c in parts) != total:
        return Violation("total_pages", f"{total} != {sum(c.pages for c in parts)}")
    d = attrs.evolve(d, constituents=tuple(parts), total_pages=total,
                     composite_reserved=cres, gap_composite=bytes(buf[emad_end:coff]))
    if send:
        return _check_send(d, kind)
    return d


def _check_send(d: Descriptor, kind: str) -> Descriptor | Violation:
    """The rules that depend on the transaction type (share, lend, donate)."""
    if d.flags & ~SEND_FLAGS:
        return Violation("send_flags", f"{d.flags:#x}")
    if kind == "share" and d.flags & FLAG_CLEAR:
        return Violation("share_clear")
    mtype, cache, share = (d.attributes >> 4) & 3, (d.attributes >> 2) & 3, d.attributes & 3
    if mtype == 3 or (mtype == 2 and cache in (0, 2)) or share == 1:
        return Violation("reserved_encoding", f"{d.attributes:#06x}")
    if (kind == "donate" or (kind == "lend" and len(d.receivers) == 1)) and mtype:
        return Violation("attributes_for_kind", f"{d.attributes:#06x}")
    for a in d.receivers:
        if (a.data == DATA_UNSPECIFIED) != (kind == "donate"):
            return Violation("data_access", f"endpoint {a.endpoint}: {a.data}")
        if a.instruction != INSTR_UNSPECIFIED:
            return Violation("instruction_access", f"endpoint {a.endpoint}")
    return d


def parse_relinquish(buf: bytes, length: int, caller: int) -> Relinquish | Violation:
    """The relinquish descriptor (Table 16.25) of endpoint ``caller``."""
    if length > len(buf) or length < RELINQUISH.size:
        return Violation("relinquish_length", f"{length}")
    handle, flags, count = _u("<QII", buf, 0)
    if RELINQUISH.size + 2 * count > length:
        return Violation("relinquish_length", f"{count} endpoints past {length}")
    if flags & ~(FLAG_CLEAR | FLAG_TIME_SLICE):
        return Violation("relinquish_flags", f"{flags:#x}")
    ids = _u(f"<{count}H", buf, RELINQUISH.size)
    if not ids or any(e != caller for e in ids):
        return Violation("relinquish_endpoints", str(ids))
    return Relinquish(handle, flags, ids)


def encode_relinquish(r: Relinquish) -> bytes:
    return struct.pack(f"<QII{len(r.endpoints)}H", r.handle, r.flags, len(r.endpoints),
                       *r.endpoints)


# --- descriptor <-> model call -------------------------------------------------------------
@attrs.frozen
class ModelCall:
    row: str
    args: tuple[int, ...]


def _coalesce(parts: tuple[Constituent, ...]) -> tuple[int, int] | None:
    """One contiguous range (base IPA, pages) for constituents that touch, else None."""
    spans = sorted((c.address, c.pages) for c in parts)
    base, pages = spans[0]
    for addr, n in spans[1:]:
        if addr != base + pages * PAGE:
            return None
        pages += n
    return base, pages


def _perm_of(data: int, instruction: int = INSTR_UNSPECIFIED) -> int:
    return {DATA_RO: 1, DATA_RW: 3}.get(data, 0) | (4 if instruction == INSTR_X else 0)


def to_model(d: Descriptor, kind: str, caller_vm: int) -> ModelCall | Violation | Inexpressible:
    """The model's call for a checked send descriptor made by ``caller_vm``."""
    if d.sender != endpoint_of(caller_vm):
        return Violation("sender_not_caller", f"{d.sender} != {endpoint_of(caller_vm)}")
    if d.flags & FLAG_CLEAR:
        return Inexpressible("zeroing memory: the model has no memory contents")
    if (d.attributes >> 4) & 3 and d.attributes != NORMAL_WB_INNER:
        return Inexpressible(f"attributes {d.attributes:#06x}: the model's memory is "
                             "normal write-back inner-shareable")
    mask = 0
    for a in d.receivers:
        v = vm_of(a.endpoint)
        if v is None:
            return Inexpressible(f"endpoint {a.endpoint} is not a model VM")
        mask |= 1 << v
    if len({a.permissions for a in d.receivers}) != 1:
        return Inexpressible("receivers with different rights: the model grants one")
    perm = DONATE_PERM if kind == "donate" else _perm_of(d.receivers[0].data)
    span = _coalesce(d.constituents)
    if span is None:
        return Inexpressible("constituents that are not one contiguous range")
    base = span[0] // PAGE
    if base >> 32:
        return Inexpressible(f"IPA {span[0]:#x} is past the model's 32-bit frame numbers")
    return ModelCall(ROW_OF_KIND[kind], (base, span[1], mask, perm))


# --- requests: model call -> registers and TX buffer -----------------------------------------
@attrs.frozen
class Request:
    regs: dict[str, int]  # x0..x7
    tx: bytes  # what the caller writes to its TX buffer


def _regs(function: str, *args: int) -> dict[str, int]:
    regs = {f"x{i}": 0 for i in range(8)}
    regs["x0"] = FUNCTIONS[function]
    for i, a in enumerate(args, 1):
        regs[f"x{i}"] = a & _M64
    return regs


def rows() -> frozenset[str]:
    """The model calls FF-A expresses."""
    return frozenset({*ROW_OF_KIND.values(), "MEM_RETRIEVE", "MEM_RELINQUISH",
                      "MEM_RECLAIM"})


def send_descriptor(kind: str, caller_vm: int, base: int, count: int, who: int,
                    perm: int) -> Descriptor | Inexpressible:
    """The descriptor a model share / lend / donate is sent as."""
    if perm & 4:
        return Inexpressible("execute rights: an FF-A sender gives no instruction access")
    if kind == "donate" and perm != DONATE_PERM and perm & 1:
        return Inexpressible(f"a donation with rights {perm}: FF-A donations carry none")
    if kind == "donate" and not perm & 1:
        return Inexpressible("a donation the model rejects for its rights: FF-A "
                             "donations carry none")
    # without R the model refuses (INVALID_PARAMETERS); so does FF-A for an unspecified
    # data access in a share or lend: the same answer, so sent that way
    data = DATA_UNSPECIFIED if kind == "donate" or not perm & 1 else (
        DATA_RW if perm & 2 else DATA_RO)
    vms = [v for v in range(16) if who >> v & 1]
    single = kind == "donate" or (kind == "lend" and len(vms) == 1)
    attributes = 0 if single else NORMAL_WB_INNER
    eoff = TRANSACTION.size
    coff = eoff + EMAD.size * len(vms)
    receivers = tuple(Access(endpoint_of(v), data, 0, coff if vms else 0) for v in vms)
    return Descriptor(endpoint_of(caller_vm), attributes, 0, 0, 0, receivers,
                      (Constituent(base * PAGE, count),), count,
                      composite_offset=coff)


def encode(row: str, args: tuple[int, ...], caller_vm: int, owner_vm: int | None = None
           ) -> Request | Inexpressible:
    """A model call made by ``caller_vm`` as FF-A registers and TX-buffer bytes.  A
    retrieve names the owner (``owner_vm``) as FF-A requires; its ``base`` is the FF-A
    instance's choice and is not sent."""
    if row in KIND_OF_ROW:
        kind = KIND_OF_ROW[row]
        d = send_descriptor(kind, caller_vm, *args)
        if isinstance(d, Inexpressible):
            return d
        data = encode_descriptor(d)
        return Request(_regs(FUNCTION_OF_KIND[kind] + "_64", len(data), len(data), 0, 0),
                       data)
    if row == "MEM_RETRIEVE":
        if owner_vm is None:
            return Inexpressible("a retrieve names the owner; none given")
        d = Descriptor(endpoint_of(owner_vm), 0, 0, args[0], 0,
                       (Access(endpoint_of(caller_vm), 0),))
        data = encode_descriptor(d)
        return Request(_regs("FFA_MEM_RETRIEVE_REQ_64", len(data), len(data), 0, 0), data)
    if row == "MEM_RELINQUISH":
        data = encode_relinquish(Relinquish(args[0], 0, (endpoint_of(caller_vm),)))
        return Request(_regs("FFA_MEM_RELINQUISH"), data)
    if row == "MEM_RECLAIM":
        return Request(_regs("FFA_MEM_RECLAIM", *split_handle(args[0]), 0), b"")
    return Inexpressible(f"{row} has no FF-A form")


def check_lengths(regs: Mapping[str, int], tx_size: int | None
                  ) -> tuple[int, int] | Violation:
    """The total and fragment lengths of a send or retrieve (w1, w2, with w3/w4 naming
    the TX buffer), checked against each other and the TX buffer (``tx_size`` bytes;
    None: the caller has mapped none); this codec's instance does not take fragmented
    transactions."""
    if tx_size is None:
        return Violation("no_tx_buffer")
    total, frag = regs.get("x1", 0) & _M32, regs.get("x2", 0) & _M32
    wide = regs.get("x0", 0) >> 30 & 1  # SMC64: x3 is a 64-bit address; SMC32: w3
    if regs.get("x3", 0) & (_M64 if wide else _M32) or regs.get("x4", 0) & _M32:
        return Violation("buffer_address")
    if frag > total:
        return Violation("fragment_past_total", f"{frag} > {total}")
    if frag < total:
        return Violation("fragmented", f"{frag} < {total}")
    if total > tx_size:
        return Violation("length_past_buffer", f"{total} > {tx_size}")
    return total, frag


def decode_request(regs: Mapping[str, int], tx: bytes, caller_vm: int,
                   retrieve_base: int = 0) -> ModelCall | Violation | Inexpressible:
    """What an FF-A request made by ``caller_vm`` asks of the model (the front end's
    reading).  A retrieve is mapped at ``retrieve_base``, the instance's choice."""
    name = function_name(regs.get("x0", 0))
    if name is None:
        return Inexpressible(f"function id {regs.get('x0', 0):#x} is not FF-A memory "
                             "management")
    base = base_name(name)
    kind = next((k for k, f in FUNCTION_OF_KIND.items() if f == base), None)
    if kind is not None or base == "FFA_MEM_RETRIEVE_REQ":
        lengths = check_lengths(regs, len(tx))
        if isinstance(lengths, Violation):
            return lengths
        parsed = parse_transaction(tx, lengths[0], kind or "retrieve_req")
        if isinstance(parsed, Violation):
            return parsed
        if kind is not None:
            return to_model(parsed, kind, caller_vm)
        if parsed.receivers[0].endpoint != endpoint_of(caller_vm) or len(
                parsed.receivers) != 1:
            return Inexpressible("a retrieve on behalf of other endpoints")
        if parsed.handle >> 16:
            return Inexpressible(f"handle {parsed.handle:#x} past the model's 16 bits")
        return ModelCall("MEM_RETRIEVE", (parsed.handle, retrieve_base))
    if base == "FFA_MEM_RELINQUISH":
        r = parse_relinquish(tx, len(tx), endpoint_of(caller_vm))
        if isinstance(r, Violation):
            return r
        if r.flags & FLAG_CLEAR:
            return Inexpressible("zeroing memory: the model has no memory contents")
        if r.handle >> 16:
            return Inexpressible(f"handle {r.handle:#x} past the model's 16 bits")
        return ModelCall("MEM_RELINQUISH", (r.handle,))
    if base == "FFA_MEM_RECLAIM":
        flags = regs.get("x3", 0) & _M32
        if flags & ~(FLAG_CLEAR | FLAG_TIME_SLICE):
            return Violation("reclaim_flags", f"{flags:#x}")
        if flags & FLAG_CLEAR:
            return Inexpressible("zeroing memory: the model has no memory contents")
        handle = handle_of(regs.get("x1", 0), regs.get("x2", 0))
        if handle >> 16:
            return Inexpressible(f"handle {handle:#x} past the model's 16 bits")
        return ModelCall("MEM_RECLAIM", (handle,))
    return Inexpressible(f"{name} is not a memory transaction")


# --- one transaction in symbolic memory: the single-receiver, single-constituent send ------
# The proofs (spec.prove, targets ``ffa:<row>``) run the codec on a TX buffer of free bytes.
# The general parser above loops over counts read from the buffer, so they read the one
# layout whose counts are fixed: one endpoint memory access descriptor at byte 48, the
# composite at 64, one constituent at 80 (96 bytes), each field read through the same
# layout tables and reader as :func:`parse_transaction`.  Where this reader gives a call,
# the general parser gives the same one (tests/hypervisor/test_ffa_codec.py); any other
# layout it declines (:class:`Inexpressible`), it does not judge it.
ONE_EMAD, ONE_COMPOSITE = TRANSACTION.size, TRANSACTION.size + EMAD.size
ONE_CONSTITUENT = ONE_COMPOSITE + COMPOSITE.size
ONE_LENGTH = ONE_CONSTITUENT + CONSTITUENT.size
_RESERVED = TRANSACTION.field("reserved")  # 12 bytes: read as a word and a half
_HEADER_RESERVED = (attrs.evolve(_RESERVED, size=8),
                    attrs.evolve(_RESERVED, offset=_RESERVED.offset + 8, size=4))


def handle_of(lo: Any, hi: Any) -> Any:
    """A 64-bit handle from its two 32-bit halves (w2/w3 of FFA_SUCCESS, w1/w2 of
    FFA_MEM_RECLAIM: the low half first, ch. 16)."""
    return logic.bits(lo, 0, 32) | logic.bits(hi, 0, 32) << 32


def split_handle(handle: Any) -> tuple[Any, Any]:
    """``(low half, high half)`` of a handle: the inverse of :func:`handle_of`."""
    return logic.bits(handle, 0, 32), logic.bits(handle, 32, 32)


def _data_of(kind: str, perm: Any) -> Any:
    """The data access a model send with rights ``perm`` is sent with (a donation none)."""
    if kind == "donate":
        return DATA_UNSPECIFIED
    return logic.ite(logic.bit(perm, 1), DATA_RW, DATA_RO)


def _single_attributes(kind: str) -> int:
    """The attributes a send to one borrower names (10.10.4: a single-borrower lend and a
    donation leave them unspecified; a share names the model's memory)."""
    return NORMAL_WB_INNER if kind == "share" else 0


def one_descriptor(kind: str, caller_vm: Any, base: Any, count: Any, vm: Any, perm: Any
                   ) -> Descriptor:
    """The descriptor a model send to the one borrower ``vm`` is sent as (rights with R
    and without X; a donation's R|W), for any field values: :func:`send_descriptor`'s
    single-borrower case."""
    return Descriptor(logic.add(caller_vm, 1), _single_attributes(kind), 0, 0, 0,
                      (Access(logic.add(vm, 1), _data_of(kind, perm), 0, ONE_COMPOSITE),),
                      (Constituent(base << 12, count),), count,
                      composite_offset=ONE_COMPOSITE)


def read_one(tx: Memory, kind: SendKind, caller_vm: Any) -> ModelCall | Violation | Inexpressible:
    """The model's call in a single-receiver, single-constituent send descriptor of
    ``kind`` (its ``ONE_LENGTH`` bytes) made by ``caller_vm``, checked by the rules
    :func:`parse_transaction`, :func:`_check_send` and :func:`to_model` apply to it."""
    sender, attributes, flags, esize, ecount, eoff = _read(
        tx, TRANSACTION, 0, "sender", "attributes", "flags", "emad_size", "emad_count",
        "emad_offset")
    res_lo, res_hi = (read_field(tx, f) for f in _HEADER_RESERVED)
    endpoint, perms, aflags = _read(tx, PERMISSIONS, ONE_EMAD, "endpoint", "permissions",
                                    "flags")
    coff, eres = _read(tx, EMAD, ONE_EMAD, "composite_offset", "reserved")
    total, count, cres = _read(tx, COMPOSITE, ONE_COMPOSITE, "total_pages", "count",
                               "reserved")
    addr, pages, kres = _read(tx, CONSTITUENT, ONE_CONSTITUENT, "address", "pages",
                              "reserved")
    if logic.or_(esize != EMAD.size, ecount != 1, eoff != ONE_EMAD, coff != ONE_COMPOSITE,
                 count != 1):
        return Inexpressible("not the single-receiver, single-constituent layout")
    if logic.or_(res_lo != 0, res_hi != 0):
        return Violation("reserved_header")
    if attributes != _single_attributes(kind):
        return Inexpressible("other attributes than a single-borrower send names")
    if eres != 0:
        return Violation("reserved_emad")
    data, instr = logic.bits(perms, 0, 2), logic.bits(perms, 2, 2)
    if logic.or_(logic.bits(perms, 4, 4) != 0, data == 3, instr == 3):
        return Violation("reserved_permissions")
    if aflags != 0:
        return Violation("send_access_flags")
    if endpoint == sender:
        return Violation("receiver_is_sender")
    if logic.or_(cres != 0, kres != 0):
        return Violation("reserved_composite")
    if logic.or_(pages == 0, total == 0):
        return Violation("zero_pages")
    if logic.bits(addr, 0, 12) != 0:
        return Violation("unaligned_address")
    if logic.ult(logic.sub(_M64, addr), logic.sub(pages << 12, 1)):
        return Violation("address_wraps")
    if total != pages:
        return Violation("total_pages")
    if logic.bits(flags, 2, 30) != 0:
        return Violation("send_flags")
    if logic.bit(flags, 0):
        return Violation("share_clear") if kind == "share" else Inexpressible("zeroing")
    if (data == DATA_UNSPECIFIED) != (kind == "donate"):
        return Violation("data_access")
    if instr != INSTR_UNSPECIFIED:
        return Violation("instruction_access")
    if sender != logic.add(caller_vm, 1):
        return Violation("sender_not_caller")
    if logic.or_(endpoint == 0, logic.ult(16, endpoint)):
        return Inexpressible("an endpoint that is no model VM")
    if logic.bits(addr, 44, 20) != 0:
        return Inexpressible("an IPA past the model's 32-bit frame numbers")
    perm = DONATE_PERM if kind == "donate" else logic.ite(data == DATA_RO, 1, 3)
    return ModelCall(ROW_OF_KIND[kind], (logic.bits(addr, 12, 32), pages,
                                         logic.set_bit(0, logic.sub(endpoint, 1), True), perm))


def one_reads_back(kind: SendKind, caller_vm: Any, base: Any, count: Any, vm: Any,
                   perm: Any) -> Any:
    """A model send to one borrower (``count`` >= 1 frames from ``base``, within the
    model's widths; rights with an FF-A form) put down as its descriptor reads as that
    very call (a condition)."""
    tx = descriptor_memory(one_descriptor(kind, caller_vm, base, count, vm, perm))
    call = read_one(tx, kind, caller_vm)
    if not isinstance(call, ModelCall) or call.row != ROW_OF_KIND[kind]:
        return False
    return logic.all_(a == b for a, b in zip(
        call.args, (base, count, logic.set_bit(0, vm, True), perm), strict=True))


def decode_one(regs: Mapping[str, Any], tx: Memory, kind: SendKind, caller_vm: Any
               ) -> Call | DecodeError:
    """A send of ``kind`` whose function id the caller has already matched, with the
    descriptor in ``tx``, as the model's call: w1 (total) and w2 (fragment length) must be
    the one layout's length and w3/w4 zero (:func:`check_lengths`), then
    :func:`read_one`.  A rule broken is the model's error FF-A allows for it (INVALID
    where it may), a request the model cannot express NOT_SUPPORTED."""
    total, frag = logic.bits(regs["x1"], 0, 32), logic.bits(regs["x2"], 0, 32)
    if logic.or_(regs["x3"] != 0, logic.bits(regs["x4"], 0, 32) != 0):
        return _as_call(Violation("buffer_address"), kind)
    if logic.or_(total != ONE_LENGTH, frag != ONE_LENGTH):
        return _as_call(Inexpressible("another length than the one layout's"), kind)
    return _as_call(read_one(tx, kind, caller_vm), kind)


def _as_call(x: ModelCall | Violation | Inexpressible, kind: SendKind) -> Call | DecodeError:
    row = BY_NAME[ROW_OF_KIND[kind]]
    if isinstance(x, ModelCall):
        return Call(row, x.args)
    if isinstance(x, Violation):
        return DecodeError(INVALID if INVALID in x.codes else min(x.codes), x.rule, row)
    return DecodeError(NOT_SUPPORTED, x.reason, row)


def answer_regs(row: str, ret: Any) -> dict[str, Any]:
    """The registers x0..x3 an FF-A instance answers a send with for the model's result
    ``ret``: FFA_SUCCESS with the handle split over w2/w3, or FFA_ERROR with the code in
    w2 (ch. 13: the model's codes are FF-A's)."""
    lo, hi = split_handle(ret)
    failed = logic.bit(ret, 63)
    return {"x0": logic.ite(failed, FUNCTIONS["FFA_ERROR"], FUNCTIONS["FFA_SUCCESS_32"]),
            "x1": 0, "x2": logic.ite(failed, logic.bits(ret, 0, 32), lo),
            "x3": logic.ite(failed, 0, hi)}


def answer_reads_back(row: str, ret: Any) -> Any:
    """The model's result ``ret`` to a send, answered by :func:`answer_regs` and read back
    by :func:`decode`'s rules, is ``ret`` (a condition)."""
    out = answer_regs(row, ret)
    w2 = logic.bits(out["x2"], 0, 32)
    code = logic.ite(logic.bit(w2, 31), w2 | (_M64 ^ _M32), w2)  # sign-extended
    return logic.ite(logic.bit(ret, 63),
                     logic.and_(out["x0"] == FUNCTIONS["FFA_ERROR"], code == ret),
                     logic.and_(out["x0"] == FUNCTIONS["FFA_SUCCESS_32"],
                                handle_of(out["x2"], out["x3"]) == ret))


# --- answers: target registers (and RX buffer) -> the model's terms ------------------------
@attrs.frozen
class Reading:
    """An FF-A answer in the model's terms (as ``xen.Reading``)."""

    ok: bool
    value: int = 0  # on success: the model call's result (a send: the 64-bit handle)
    seen: int = _M64
    errors: frozenset[str] = frozenset()  # on failure: the model errors it may stand for
    code: int = 0  # on failure: the FF-A error code (negative); 0 if not FFA_ERROR
    text: str = ""
    # a retrieve: where the instance mapped the region (model frame), how many frames,
    # the rights granted and the transaction type it reports
    base: int | None = None
    count: int = 0
    perm: int = 0
    kind: str = ""

    def error_mask(self) -> int:
        out = 0
        for name in self.errors:
            out |= 1 << -HV_ERRORS[name]
        return out


def _signed32(v: int) -> int:
    v &= _M32
    return v - (1 << 32) if v >> 31 else v


def decode(row: str, out: Mapping[str, int], rx: bytes = b"", caller_vm: int = 0
           ) -> Reading:
    """The target's answer to ``row`` (registers x0..x3 and, for a retrieve, its RX
    buffer) read as the model's answer."""
    name = function_name(out.get("x0", 0))
    w = [out.get(f"x{i}", 0) & _M32 for i in range(4)]
    if name == "FFA_ERROR":
        code = _signed32(w[2])
        label = ERROR_NAME.get(code, str(code))
        return Reading(False, errors=expresses(code, row), code=code,
                       text=f"FFA_ERROR {label}")
    if name in ("FFA_SUCCESS_32", "FFA_SUCCESS_64") and row in KIND_OF_ROW:
        handle = handle_of(w[2], w[3])
        return Reading(True, handle, text=f"FFA_SUCCESS handle {handle:#x}")
    if name in ("FFA_SUCCESS_32", "FFA_SUCCESS_64") and row in ("MEM_RELINQUISH",
                                                                 "MEM_RECLAIM"):
        return Reading(True, 0, text="FFA_SUCCESS")
    if name == "FFA_MEM_RETRIEVE_RESP" and row == "MEM_RETRIEVE":
        return _retrieved(w[1], w[2], rx, caller_vm)
    return Reading(False, text=f"{name or hex(out.get('x0', 0))} is no answer to {row}")


def _retrieved(total: int, frag: int, rx: bytes, caller_vm: int) -> Reading:
    if frag != total:
        return Reading(False, text=f"fragmented FFA_MEM_RETRIEVE_RESP ({frag} of {total})")
    d = parse_transaction(rx, total, "retrieve_resp")
    if isinstance(d, Violation):
        return Reading(False, text=f"malformed FFA_MEM_RETRIEVE_RESP: {d.rule}")
    me = [a for a in d.receivers if a.endpoint == endpoint_of(caller_vm)]
    if not me:
        return Reading(False, text="FFA_MEM_RETRIEVE_RESP does not name the caller")
    span = _coalesce(d.constituents)
    if span is None:
        return Reading(False, text="FFA_MEM_RETRIEVE_RESP maps more than one range")
    kind = KIND_OF_TYPE.get((d.flags >> TYPE_SHIFT) & 3, "")
    perm = _perm_of(me[0].data, me[0].instruction)
    return Reading(True, 0, base=span[0] // PAGE, count=span[1], perm=perm, kind=kind,
                   text=f"FFA_MEM_RETRIEVE_RESP {kind} at IPA {span[0]:#x}, "
                        f"{span[1]} pages, rights {perm}")


# --- the RX/TX mailbox ----------------------------------------------------------------------
RXTX_MAX_PAGES = 64  # an implementation's bound (Hafnium RXTX_MAX_PAGE_COUNT, Xen's own)
MAILBOX_RULES: tuple[tuple[str, str, str], ...] = (
    ("FFA_RXTX_MAP", "both buffers 4 KiB aligned, 1..max pages each, not overlapping: "
     "else INVALID_PARAMETERS", "ch. 13 FFA_RXTX_MAP (Hafnium api_vm_configure_pages)"),
    ("FFA_RXTX_MAP", "a pair already mapped: DENIED", "ch. 13 FFA_RXTX_MAP (Hafnium, Xen)"),
    ("FFA_RXTX_UNMAP", "no pair mapped: INVALID_PARAMETERS", "ch. 13 FFA_RXTX_UNMAP (Xen)"),
    ("FFA_MEM_*", "a transaction with no pair mapped: INVALID_PARAMETERS (Hafnium) or "
     "DENIED", "ch. 16"),
    ("FFA_MEM_RETRIEVE_RESP", "the response is written to the caller's RX buffer, which "
     "the caller then owns until FFA_RX_RELEASE; a retrieve while it still does: BUSY",
     "ch. 13 FFA_RX_RELEASE (Hafnium: mailbox busy)"),
    ("FFA_RX_RELEASE", "the caller does not own its RX buffer: DENIED",
     "ch. 13 FFA_RX_RELEASE (Hafnium, Xen)"),
)


@attrs.frozen
class Mailbox:
    """An endpoint's RX/TX buffer pair and who owns the RX buffer."""

    tx: int = 0
    rx: int = 0
    pages: int = 0  # 0: no pair mapped
    rx_owned: bool = False  # the endpoint owns RX (a response it has not released)

    @property
    def mapped(self) -> bool:
        return self.pages > 0


def rxtx_map(mb: Mailbox, tx: int, rx: int, pages: int) -> tuple[Mailbox, int]:
    """FFA_RXTX_MAP: the new mailbox and 0, or the unchanged one and the error."""
    if mb.mapped:
        return mb, DENIED
    size = pages * PAGE
    if not 1 <= pages <= RXTX_MAX_PAGES or tx % PAGE or rx % PAGE or (
            tx < rx + size and rx < tx + size):
        return mb, INVALID
    return Mailbox(tx, rx, pages), 0


def rxtx_unmap(mb: Mailbox) -> tuple[Mailbox, int]:
    if not mb.mapped:
        return mb, INVALID
    return Mailbox(), 0


def rx_release(mb: Mailbox) -> tuple[Mailbox, int]:
    if not mb.mapped or not mb.rx_owned:
        return mb, DENIED
    return attrs.evolve(mb, rx_owned=False), 0


def rx_deliver(mb: Mailbox) -> tuple[Mailbox, int]:
    """A retrieve response is to be written to the RX buffer."""
    if not mb.mapped:
        return mb, INVALID
    if mb.rx_owned:
        return mb, BUSY
    return attrs.evolve(mb, rx_owned=True), 0
