"""Registry records for the statements VIRTIO 1.4 adds to the sections we cover.

VIRTIO 1.4 (tag v1.4-cs01, HEAD of oasis-tcs/virtio-spec) keeps the covered sections'
numbers but adds normative statements to them, all in net (§5.1) and gpu (§5.7):

* net's Device Operation (1.3's §5.1.6, 1.4's §5.1.9) gains sentences in its transmit and
  receive blocks (UDP-tunnel segmentation and its outer checksum, the outer network header
  offset, IPsec flags) and whole new blocks: RSS contexts (§5.1.9.5.8.3/4), device
  statistics (§5.1.9.5.11.12/13), flow filters (§5.1.9.6.4/5) and IPsec (§5.1.9.7.4/5);
* gpu gains the blob-alignment rules of §5.7.6.8.1 and §5.7.6.9.1.

Which statements are new is ``scripts/virtio-statements --1.4``'s reading of the LaTeX
(new blocks, and sentences of an old block that pair with none of its 1.3 sentences; a
1.3 rule 1.4 merely amended keeps its 1.3 record): 114 statements, 62 device-side and 52
driver-side.  One record each; ``text`` is our paraphrase.

Each record has ``only_in="1.4"`` and its 1.4 section as ``section``.  A target is judged
against VIRTIO 1.3, so these records are not applicable to it:
:func:`spec.virtio.registry.all_requirements` leaves them out unless asked, and no
coverage figure counts them.  ``when`` records a condition the statement's own wording
states (or, with ``via``, the wording that ties a facility to its feature), citing
file:line at tag v1.4-cs01.  The flow-filter blocks are conditioned on an admin
capability, not a feature bit, and carry no ``when``.
"""

from __future__ import annotations

from spec.virtio.registry import Requirement, When, register

NET = "device-types/net/description.tex:"
GPU = "device-types/gpu/description.tex:"
IPSEC_VIA = NET + "3552"  # "... IPsec operations when VIRTIO_NET_F_IPSEC is negotiated"
STATS = NET + "2919"  # "When the VIRTIO_NET_F_DEVICE_STATS feature is negotiated, ..."
RSS_CTX = NET + "2258"  # the driver issues RSS context commands only with RSS_CONTEXT


def V(name: str, section: str, level: str, side: str, text: str,
      when: When | None = None) -> Requirement:
    """A 1.4-only record, id ``VIRTIO-1.4-<1.4 section>-<DEV|DRV>-<name>``."""
    rid = f"VIRTIO-1.4-{section}-{'DEV' if side == 'device' else 'DRV'}-{name}"
    return Requirement(rid, section, level, side, text, when=when,  # type: ignore[arg-type]
                       only_in="1.4")


def neg(feature: str, line: int, via: str = "") -> When:
    return When(negotiated=(feature,), source=f"{NET}{line}", via=via)


def not_neg(feature: str, line: int) -> When:
    return When(not_negotiated=(feature,), source=f"{NET}{line}")


def ipsec(line: int) -> When:
    return neg("IPSEC", line, via=IPSEC_VIA)


def stats(line: int) -> When:
    return neg("DEVICE_STATS", line, via="" if f"{NET}{line}" == STATS else STATS)


TX = "5.1.9.2.1"
TX_DEV = "5.1.9.2.2"
RX_BUF = "5.1.9.3.1"
RX_DEV = "5.1.9.4.1"
RX_DRV = "5.1.9.4.2"

NET_TX = (
    V("HDR-SIZE-AS-RX", TX, "MUST", "driver",
      "The header in front of a transmitted packet is as long as the one receive buffers "
      "were sized for."),
    V("OUTER-NH-OFFSET", TX, "MAY", "driver",
      "Having OUT_NET_HEADER, the driver can say where a packet's outer network header "
      "begins, as a non-zero outer_nh_offset, when there is one.",
      neg("OUT_NET_HEADER", 805)),
    V("TUNNEL-GSO-REQUEST", TX, "MAY", "driver",
      "Having HOST_UDP_TUNNEL_GSO, the driver can request segmentation over a UDP tunnel "
      "with the gso_type tunnel bit for the inner header's IP version; lacking it, it "
      "sets neither tunnel bit.",
      neg("HOST_UDP_TUNNEL_GSO", 836)),
    V("TUNNEL-BIT-MATCHES-INNER", TX, "MUST", "driver",
      "A tunnel segmentation request picks the IPv4 tunnel bit for an inner IPv4 header "
      "and the IPv6 one for an inner IPv6 header."),
    V("TUNNEL-CSUM-NEEDS-BOTH", TX, "MUST NOT", "driver",
      "Tunnelled packets to segment whose outer UDP checksum the device is to fill go out "
      "only with HOST_UDP_TUNNEL_GSO and HOST_UDP_TUNNEL_GSO_CSUM both negotiated, marked "
      "by a tunnel bit in gso_type and UDP_TUNNEL_CSUM in flags."),
    V("NO-TUNNEL-CSUM-WITHOUT-FEATURE", TX, "MUST", "driver",
      "Lacking HOST_UDP_TUNNEL_GSO_CSUM, the driver keeps UDP_TUNNEL_CSUM clear and hands "
      "over no tunnelled packet that wants its outer checksum offloaded.",
      not_neg("HOST_UDP_TUNNEL_GSO_CSUM", 857)),
    V("TUNNEL-NOT-WITH-GSO-UDP", TX, "MUST NOT", "driver",
      "A tunnel bit never accompanies the deprecated UFO type GSO_UDP."),
    V("TUNNEL-NOT-BOTH", TX, "MUST NOT", "driver",
      "The IPv4 and IPv6 tunnel bits are never both set."),
    V("TUNNEL-CSUM-NEEDS-TUNNEL", TX, "MUST NOT", "driver",
      "UDP_TUNNEL_CSUM in flags comes only with one of the two tunnel bits in gso_type."),
    V("TUNNEL-GSO-SET", TX, "MAY", "driver",
      "Having HOST_UDP_TUNNEL_GSO, the driver may mark a packet with a tunnel bit (the "
      "fields it then fills follow).",
      neg("HOST_UDP_TUNNEL_GSO", 924)),
    V("TUNNEL-OFFSETS", TX, "MUST", "driver",
      "A tunnel-marked packet gives the outer UDP header's position in outer_th_offset "
      "and the inner network header's in inner_nh_offset.",
      neg("HOST_UDP_TUNNEL_GSO", 924)),
    V("TUNNEL-CSUM-SET", TX, "MAY", "driver",
      "Having HOST_UDP_TUNNEL_GSO_CSUM, a tunnel-marked packet may ask for its outer UDP "
      "checksum (UDP_TUNNEL_CSUM), its outer checksum field then holding the outer "
      "pseudo-header sum.",
      neg("HOST_UDP_TUNNEL_GSO_CSUM", 934)),
    V("OUTER-CSUM-NO-VALIDATION", TX, "MUST NOT", "driver",
      "A tunnel-marked packet sent lacking HOST_UDP_TUNNEL_GSO_CSUM has an outer UDP "
      "header whose checksum the device need not check.",
      not_neg("HOST_UDP_TUNNEL_GSO_CSUM", 947)),
    V("OUTER-CSUM-ZERO-OR-COMPLETE", TX, "MUST", "driver",
      "Then its outer UDP checksum is 0 or already the correct full sum.",
      not_neg("HOST_UDP_TUNNEL_GSO_CSUM", 947)),
    V("TUNNEL-GSO-NEEDS-FEATURE", TX, "MUST NOT", "driver",
      "Lacking HOST_UDP_TUNNEL_GSO, gso_type carries no tunnel bit.",
      not_neg("HOST_UDP_TUNNEL_GSO", 967)),
    V("TUNNEL-CSUM-NEEDS-FEATURE", TX, "MUST NOT", "driver",
      "Lacking HOST_UDP_TUNNEL_GSO_CSUM, flags carries no UDP_TUNNEL_CSUM.",
      not_neg("HOST_UDP_TUNNEL_GSO_CSUM", 971)),
    V("TUNNEL-NOT-DATA-VALID", TX, "MUST NOT", "driver",
      "A packet whose gso_type has a tunnel bit never has DATA_VALID in flags."),
    V("IPSEC-OUTBOUND-SA", TX, "MUST", "driver",
      "Before marking a packet SECURITY for inline IPsec, the driver has created the "
      "outbound SA resource object for it.",
      ipsec(985)),
    V("IPSEC-RESOURCE-ID", TX, "MUST", "driver",
      "Such a packet's resource_id names an outbound SA object that exists.",
      ipsec(985)),
    V("OUTER-NH-OFFSET-USE", TX_DEV, "MAY", "device",
      "Having OUT_NET_HEADER, the device can take a non-zero outer_nh_offset as the start "
      "of the outer network header.",
      neg("OUT_NET_HEADER", 1000)),
    V("OUTER-NH-OFFSET-IGNORED", TX_DEV, "MUST NOT", "device",
      "Else (feature off, or offset 0) outer_nh_offset is left unread."),
    V("REJECT-BOTH-TUNNEL-BITS", TX_DEV, "MUST NOT", "device",
      "A packet to send with both tunnel bits in gso_type is refused."),
    V("TUNNEL-OFFSETS-IGNORED", TX_DEV, "MUST NOT", "device",
      "With no tunnel bit, outer_th_offset and inner_nh_offset are left unread."),
    V("REJECT-BAD-TUNNEL-GSO", TX_DEV, "MUST NOT", "device",
      "A tunnel-marked packet to send is refused when NEEDS_CSUM is clear, DATA_VALID is "
      "set, or its gso_type less the tunnel bits is GSO_NONE."),
    V("SECURITY-FIELDS-IGNORED", TX_DEV, "MUST NOT", "device",
      "Without SECURITY in flags, resource_id and resource_type are left unread."),
    V("HDR-SIZE-BY-FEATURES", RX_BUF, "MUST", "driver",
      "The driver sizes the header up to the last field its features bring in: 32 bytes "
      "with OUT_NET_HEADER or IPSEC, else 24 with HOST_UDP_TUNNEL_GSO, else 20 with "
      "HASH_REPORT, else 12."),
)

NET_RX = (
    V("NO-TUNNEL-BITS-WITHOUT-FEATURE", RX_DEV, "MUST NOT", "device",
      "Lacking GUEST_UDP_TUNNEL_GSO, no received packet carries a tunnel bit in gso_type.",
      not_neg("GUEST_UDP_TUNNEL_GSO", 1268)),
    V("NO-TUNNEL-CSUM-WITHOUT-FEATURE", RX_DEV, "MUST NOT", "device",
      "Lacking GUEST_UDP_TUNNEL_GSO_CSUM, no received packet carries UDP_TUNNEL_CSUM.",
      not_neg("GUEST_UDP_TUNNEL_GSO_CSUM", 1272)),
    V("OUTER-NH-OFFSET", RX_DEV, "MAY", "device",
      "Having OUT_NET_HEADER, the device can report a received packet's outer network "
      "header start as a non-zero outer_nh_offset.",
      neg("OUT_NET_HEADER", 1281)),
    V("OUTER-NH-OFFSET-UNUSED", RX_DEV, "MUST", "device",
      "Else it puts nothing meaningful in outer_nh_offset."),
    V("TUNNEL-GSO-NEEDS-FEATURE", RX_DEV, "MUST NOT", "device",
      "Tunnelled packets still to segment reach the driver only with GUEST_UDP_TUNNEL_GSO, "
      "then with the tunnel bit of the inner IP version, both tunnel offsets filled and "
      "an outer UDP header needing no checksum offload."),
    V("TUNNEL-CSUM-NEEDS-FEATURE", RX_DEV, "MUST NOT", "device",
      "Lacking GUEST_UDP_TUNNEL_GSO_CSUM, the driver gets no tunnelled packet that needs "
      "both segmentation and its outer checksum done.",
      not_neg("GUEST_UDP_TUNNEL_GSO_CSUM", 1312)),
    V("TUNNEL-NOT-DATA-VALID", RX_DEV, "MUST NOT", "device",
      "A received packet with a tunnel bit never has DATA_VALID in flags."),
    V("TUNNEL-CSUM-SET", RX_DEV, "MAY", "device",
      "Having GUEST_UDP_TUNNEL_GSO_CSUM, a tunnel-marked received packet may carry "
      "UDP_TUNNEL_CSUM, its outer checksum then holding the outer pseudo-header sum.",
      neg("GUEST_UDP_TUNNEL_GSO_CSUM", 1353)),
    V("OUTER-CSUM-ZERO-OR-FULL", RX_DEV, "MUST", "device",
      "With that feature, a tunnel bit and UDP_TUNNEL_CSUM clear, the outer UDP checksum "
      "handed over is 0 or complete.",
      neg("GUEST_UDP_TUNNEL_GSO_CSUM", 1360)),
    V("SECURITY-FLAG", RX_DEV, "MUST", "device",
      "SECURITY marks a received packet that IPsec processing handled.",
      ipsec(1367)),
    V("SECURITY-FLAG-CLEAR", RX_DEV, "MUST", "device",
      "A packet IPsec did not handle has SECURITY clear.",
      ipsec(1367)),
    V("SECURITY-FLAG-INDEPENDENT", RX_DEV, "MUST", "device",
      "SECURITY is decided on its own, whatever SECURITY_ERR and SA_SOFT_EXPIRY_WARN are.",
      ipsec(1369)),
    V("SECURITY-ERR", RX_DEV, "MUST", "device",
      "SECURITY_ERR marks a packet whose IPsec processing failed somewhere.",
      ipsec(1372)),
    V("SECURITY-ERR-CLEAR", RX_DEV, "MUST", "device",
      "A packet without such a failure has SECURITY_ERR clear.",
      ipsec(1372)),
    V("SECURITY-ERR-INDEPENDENT", RX_DEV, "MUST", "device",
      "SECURITY_ERR is decided on its own, whatever SA_SOFT_EXPIRY_WARN is.",
      ipsec(1374)),
    V("SA-SOFT-EXPIRY", RX_DEV, "MUST", "device",
      "SA_SOFT_EXPIRY_WARN marks packets once the SA behind resource_id has hit a soft "
      "lifetime limit set for it.",
      ipsec(1377)),
    V("OUTER-NH-OFFSET-USE", RX_DRV, "MAY", "driver",
      "Having OUT_NET_HEADER, the driver can use a non-zero outer_nh_offset of a received "
      "packet as its outer network header start.",
      neg("OUT_NET_HEADER", 1388)),
    V("OUTER-NH-OFFSET-UNUSED", RX_DRV, "MUST", "driver",
      "Else the driver pays no attention to outer_nh_offset."),
    V("REJECT-BOTH-TUNNEL-BITS", RX_DRV, "MUST NOT", "driver",
      "The driver drops a received packet with both tunnel bits set."),
    V("TUNNEL-OFFSETS-IGNORED", RX_DRV, "MUST NOT", "driver",
      "With no tunnel bit, the driver reads neither tunnel offset."),
    V("REJECT-BAD-TUNNEL-GSO", RX_DRV, "MUST NOT", "driver",
      "The driver drops a tunnel-marked received packet when NEEDS_CSUM is clear, "
      "DATA_VALID is set, or its gso_type less the tunnel bits is GSO_NONE."),
)

RSS = "5.1.9.5.8.3"
RSS_DRV = "5.1.9.5.8.4"
ST = "5.1.9.5.11.12"
ST_DRV = "5.1.9.5.11.13"

NET_CTRL = (
    V("MAX-RSS-CONTEXTS", RSS, "MUST", "device",
      "Offering RSS_CONTEXT, the device reports max_rss_contexts of at least one.",
      When(offered=("RSS_CONTEXT",), source=NET + "2252")),
    V("RSS-CONTEXTS-RESET", RSS, "MUST", "device",
      "Reset forgets every RSS context set up before.",
      neg("RSS_CONTEXT", 2254, via=RSS_CTX)),
    V("RSS-CTX-NEEDS-FEATURE", RSS_DRV, "MUST", "driver",
      "RSS context commands are issued only with RSS_CONTEXT negotiated."),
    V("RSS-CTX-ID-RANGE", RSS_DRV, "MUST", "driver",
      "rss_ctx_id lies between 1 and max_rss_contexts, both included.",
      neg("RSS_CONTEXT", 2260, via=RSS_CTX)),
    V("NO-VQ-PAIRS-SET-WITH-CONTEXTS", RSS_DRV, "MUST NOT", "driver",
      "After the device has accepted any RSS context, the driver stops sending "
      "MQ_VQ_PAIRS_SET.",
      neg("RSS_CONTEXT", 2262, via=RSS_CTX)),
    V("STATS-CAPABILITIES", ST, "MUST", "device",
      "Having DEVICE_STATS, the device answers STATS_QUERY with its statistics "
      "capabilities structure.",
      stats(2919)),
    V("STATS-BAD-REQUEST-ERR", ST, "MUST", "device",
      "A faulty per-queue statistics request (queue out of range, an unknown type or one "
      "invalid for that queue, a type whose feature is off) is answered VIRTIO_NET_ERR.",
      stats(2924)),
    V("STATS-FAIL-WHOLE", ST, "MUST", "device",
      "A single faulty entry fails the command as a whole.",
      stats(2925)),
    V("STATS-SIZE", ST, "MUST", "device",
      "Each statistics reply header's size is the byte length that reply really occupies.",
      stats(2936)),
    V("STATS-TYPE-VQ", ST, "MUST", "device",
      "Each statistics reply header names its type and vq_index.",
      stats(2937)),
    V("STATS-FILL-VALID", ST, "MUST", "device",
      "The device writes into the result buffer no more than the valid bytes.",
      stats(2942)),
    V("STATS-WRAP", ST, "MUST", "device",
      "A counter that overflows starts again from 0.",
      stats(2945)),
    V("STATS-QUERY-FIRST", ST_DRV, "MUST", "driver",
      "The types the driver asks for are ones STATS_QUERY reported.",
      stats(2950)),
    V("STATS-TYPES-VALID", ST_DRV, "MUST", "driver",
      "types_bitmap holds only types that fit the queue given by vq_index.",
      stats(2953)),
    V("STATS-RESULT-CAPACITY", ST_DRV, "MUST", "driver",
      "The result buffer can take every reply header the request asks for.",
      stats(2956)),
)

FF = "5.1.9.6.4"
FF_DRV = "5.1.9.6.5"

NET_FLOW_FILTER = (
    V("FF-CAPS-LISTED", FF, "MUST", "device",
      "A device with flow filters names the FF resource, selector and action capabilities "
      "among supported_caps of CAP_SUPPORT_QUERY."),
    V("FF-RESOURCE-COMMANDS", FF, "MUST", "device",
      "It implements the resource object create, modify, query and destroy commands for "
      "flow filter groups, classifiers and rules."),
    V("FF-DISABLED-INVALID-OPCODE", FF, "SHOULD", "device",
      "While one of the three FF capabilities is off, those four commands fail with "
      "Q_INVALID_OPCODE."),
    V("FF-GROUP-PRIORITY-TAKEN", FF, "SHOULD", "device",
      "A group created with a group_priority another group holds fails with EINVAL."),
    V("FF-GROUP-LIMIT", FF, "SHOULD", "device",
      "A group created beyond the smaller of groups_limit and rules_per_group_limit fails "
      "with ENOSPC."),
    V("FF-CLASSIFIER-LIMIT", FF, "SHOULD", "device",
      "A classifier created beyond classifiers_limit fails with ENOSPC."),
    V("FF-GROUP-BUSY", FF, "SHOULD", "device",
      "Destroying a group some rule still uses fails with EBUSY."),
    V("FF-CLASSIFIER-BUSY", FF, "SHOULD", "device",
      "Destroying a classifier some rule still uses fails with EBUSY."),
    V("FF-RULE-CREATE-CHECKS", FF, "SHOULD", "device",
      "Creating a rule fails for a DIRECT_RX_VQ action to no receive queue, a priority not "
      "below last_rule_priority, an id not below the smaller rule limit, keys longer or "
      "shorter than the classifier's masks, or an action the capability lacks."),
    V("FF-RESET-VQ-DROP", FF, "MUST", "device",
      "Packets a rule sends to a receive queue under reset are dropped."),
    V("FF-FIRST-RULE-WINS", FF, "MUST", "device",
      "Once one rule applies to a packet, no other rule and no other steering does."),
    V("FF-GROUP-ORDER", FF, "MUST", "device",
      "Groups are tried from the highest priority down."),
    V("FF-GROUP-STOP", FF, "MUST", "device",
      "A rule applied from one group leaves the rest of the groups untried."),
    V("FF-NEXT-GROUP", FF, "MUST", "device",
      "A group with no matching rule passes the packet to the next lower group, until one "
      "matches or none is left."),
    V("FF-RULE-ORDER", FF, "MUST", "device",
      "In a group, rules are tried by falling priority until one matches, and its action "
      "is carried out."),
    V("FF-ONE-ACTION", FF, "MUST", "device",
      "No packet gets more than one action."),
    V("FF-SAME-PRIORITY-ANY-ORDER", FF, "MAY", "device",
      "Equal rule_priority rules of a group may be tried in any order."),
    V("FF-PROCESSING-ORDER", FF, "MUST", "device",
      "Receive steering runs RX/MAC/VLAN filtering, then flow filter rules, then (when no "
      "rule applied) RSS or automatic steering."),
    V("FF-DROP-STOPS", FF, "MUST", "device",
      "A packet dropped at some stage skips every later one."),
    V("FF-SKIP-AFTER-FILTER-DROP", FF, "MUST", "device",
      "A packet dropped by RX/MAC/VLAN filtering never meets the flow filter rules."),
    V("FF-PARTIAL-MASK-CLASSIFIER", FF, "MUST", "device",
      "Where the selectors allow partial masks, a classifier created with PARTIAL_MASK is "
      "accepted, full masks included."),
    V("FF-ENABLE-CAPS", FF_DRV, "MUST", "driver",
      "Flow filters are used only after the driver switched on the FF resource, selector "
      "and action capabilities."),
    V("FF-GROUP-IN-USE", FF_DRV, "SHOULD NOT", "driver",
      "A group some rule still uses is not destroyed."),
    V("FF-GROUP-AFTER-RULES", FF_DRV, "SHOULD", "driver",
      "A group goes only after all its rules have gone."),
    V("FF-CLASSIFIER-IN-USE", FF_DRV, "SHOULD NOT", "driver",
      "A classifier some rule still uses is not destroyed."),
    V("FF-CLASSIFIER-AFTER-RULES", FF_DRV, "SHOULD", "driver",
      "A classifier goes only after all its rules have gone."),
    V("FF-DISTINCT-PRIORITY", FF_DRV, "SHOULD NOT", "driver",
      "No two rules of a group share a rule_priority, since both might match one packet."),
    V("FF-PRIORITY-PER-OVERLAP", FF_DRV, "SHOULD", "driver",
      "Rules that could match one packet get distinct rule_priority values."),
    V("FF-CLASSIFIER-SELECTOR-TYPES", FF_DRV, "MUST", "driver",
      "A new classifier's selectors are Ethernet first, IPv4 or IPv6 second (count over 1) "
      "and UDP or TCP third (count over 2)."),
    V("FF-CLASSIFIER-MASKS", FF_DRV, "MUST", "driver",
      "A new classifier fully masks EtherType when count is 2 or more, and the IPv4 "
      "protocol or IPv6 next header when count is over 2."),
    V("FF-RULE-ETHERTYPE-KEY", FF_DRV, "MUST", "driver",
      "A rule under a classifier of count 2 or more keys the IEEE 802 EtherType of IPv4 or "
      "IPv6."),
    V("FF-RULE-PROTOCOL-KEY", FF_DRV, "MUST", "driver",
      "A rule under a classifier of count over 2 with an IP second selector keys an IANA "
      "protocol number in the protocol or next-header field."),
    V("FF-FULL-MASKS", FF_DRV, "SHOULD", "driver",
      "Without PARTIAL_MASK, each field a selector masks is masked in full, in the "
      "capability as in the classifier."),
)

IP = "5.1.9.7.4"
IP_DRV = "5.1.9.7.5"

NET_IPSEC = (
    V("IPSEC-CAPS-LISTED", IP, "MUST", "device",
      "A device doing inline IPsec names the IPsec resource and SA capabilities among "
      "supported_caps of CAP_SUPPORT_QUERY.",
      ipsec(3609)),
    V("IPSEC-RESOURCE-COMMANDS", IP, "MUST", "device",
      "It implements the resource object create, modify, query and destroy commands for "
      "outbound and inbound SAs.",
      ipsec(3611)),
    V("IPSEC-DISABLED-INVALID-OPCODE", IP, "MUST", "device",
      "While either IPsec capability is off, those commands on SA objects fail with "
      "Q_INVALID_OPCODE.",
      ipsec(3618)),
    V("IPSEC-SA-EXISTS", IP, "MUST", "device",
      "Creating an SA object under an id already in use fails with the already-exists "
      "status.",
      ipsec(3626)),
    V("IPSEC-OUTB-CREATE-CHECKS", IP, "MUST", "device",
      "Creating an outbound SA fails for an id not below outb_sa_limit or parameters "
      "(mode, options, algorithms) the SA capability does not list.",
      ipsec(3631)),
    V("IPSEC-INB-CREATE-CHECKS", IP, "MUST", "device",
      "Creating an inbound SA fails for an id not below inb_sa_limit or parameters the SA "
      "capability does not list.",
      ipsec(3639)),
    V("IPSEC-SA-TABLE", IP, "SHOULD", "device",
      "The device keeps SAs in a table looked up by id for the traffic that follows.",
      ipsec(3647)),
    V("IPSEC-RECREATE", IP, "MUST", "device",
      "An SA object once destroyed can be created anew with no reset in between.",
      ipsec(3650)),
    V("IPSEC-SAME-SPI", IP, "MAY", "device",
      "Creating an SA whose spi another SA has may fail with EINVAL.",
      ipsec(3655)),
    V("IPSEC-RESET-DESTROYS", IP, "MUST", "device",
      "Reset removes every resource object created so far.",
      ipsec(3660)),
    V("IPSEC-CAP-LIST-QUERY", IP_DRV, "MUST", "driver",
      "The driver learns the device's capability types through CAP_ID_LIST_QUERY.",
      ipsec(3664)),
    V("IPSEC-CAP-GET", IP_DRV, "MUST", "driver",
      "When listed, it reads the IPsec resource and SA capabilities with DEVICE_CAP_GET.",
      ipsec(3667)),
    V("IPSEC-CAP-SET", IP_DRV, "MUST", "driver",
      "It tells the device which IPsec capabilities it will use with DEVICE_CAP_SET.",
      ipsec(3671)),
    V("IPSEC-OUTB-PARAMS", IP_DRV, "MUST", "driver",
      "An outbound SA is created with all its SA parameters given.",
      ipsec(3675)),
    V("IPSEC-INB-PARAMS", IP_DRV, "MUST", "driver",
      "An inbound SA is created with all parameters given except the tunnel ones.",
      ipsec(3678)),
    V("IPSEC-INB-SPI-UNIQUE", IP_DRV, "SHOULD NOT", "driver",
      "No two inbound SAs are given one spi.",
      ipsec(3682)),
    V("IPSEC-PMTU", IP_DRV, "MUST", "driver",
      "Outbound packets given to the device are no larger than the path MTU.",
      ipsec(3684)),
)

GPU_BLOB = (
    V("BLOB-SIZE-ALIGNED", "5.7.6.8.1", "MUST", "driver",
      "Having BLOB_ALIGNMENT, a RESOURCE_CREATE_BLOB request's size is a multiple of the "
      "configured blob_alignment.",
      When(negotiated=("BLOB_ALIGNMENT",), source=GPU + "715")),
    V("MAP-BLOB-OFFSET-ALIGNED", "5.7.6.9.1", "MUST", "driver",
      "Having BLOB_ALIGNMENT, a RESOURCE_MAP_BLOB request's offset is a multiple of the "
      "configured blob_alignment.",
      When(negotiated=("BLOB_ALIGNMENT",), source=GPU + "819")),
)

ONLY_IN_1_4 = (*NET_TX, *NET_RX, *NET_CTRL, *NET_FLOW_FILTER, *NET_IPSEC, *GPU_BLOB)

register(*ONLY_IN_1_4)
