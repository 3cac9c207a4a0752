"""ABI constants generated from spec.hypercalls.abi; do not edit.

Regenerate with ``python -m reference_impl.gen_abi``.
"""

# fmt: off
ABI_VERSION = '1.0'

PSCI_ERRORS: dict[str, int] = {
    'SUCCESS': 0,
    'NOT_SUPPORTED': -1,
    'INVALID_PARAMETERS': -2,
    'DENIED': -3,
    'ALREADY_ON': -4,
    'ON_PENDING': -5,
    'INTERNAL_FAILURE': -6,
    'NOT_PRESENT': -7,
    'DISABLED': -8,
    'INVALID_ADDRESS': -9,
}
HV_ERRORS: dict[str, int] = {
    'SUCCESS': 0,
    'NOT_SUPPORTED': -1,
    'INVALID_PARAMETERS': -2,
    'NO_MEMORY': -3,
    'BUSY': -4,
    'DENIED': -6,
}
SMCCC_ERRORS: dict[str, int] = {
    'SUCCESS': 0,
    'NOT_SUPPORTED': -1,
    'NOT_REQUIRED': -2,
    'INVALID_PARAMETER': -3,
}
ARCH_WORKAROUNDS = (0x80008000, 0x80007fff, 0x80003fff)

# name, function id, smc64, caller, error space, handler, ((arg name, width), ...)
ROWS: tuple[tuple[str, int, bool, str, str, str, tuple[tuple[str, int], ...]], ...] = (
    ('PSCI_VERSION', 0x84000000, False, 'any',
     'psci', 'psci_version', ()),
    ('CPU_OFF', 0x84000002, False, 'any',
     'psci', 'cpu_off', ()),
    ('CPU_ON_32', 0x84000003, False, 'any',
     'psci', 'cpu_on', (('target_cpu', 32), ('entry', 32), ('context', 32),)),
    ('CPU_ON', 0xc4000003, True, 'any',
     'psci', 'cpu_on', (('target_cpu', 64), ('entry', 64), ('context', 64),)),
    ('AFFINITY_INFO_32', 0x84000004, False, 'any',
     'psci', 'affinity_info', (('target_affinity', 32), ('lowest_level', 32),)),
    ('AFFINITY_INFO', 0xc4000004, True, 'any',
     'psci', 'affinity_info', (('target_affinity', 64), ('lowest_level', 32),)),
    ('CPU_SUSPEND_32', 0x84000001, False, 'any',
     'psci', 'cpu_suspend', (('power_state', 32), ('entry', 32), ('context', 32),)),
    ('CPU_SUSPEND', 0xc4000001, True, 'any',
     'psci', 'cpu_suspend', (('power_state', 32), ('entry', 64), ('context', 64),)),
    ('MIGRATE_INFO_TYPE', 0x84000006, False, 'any',
     'psci', 'migrate_info_type', ()),
    ('SYSTEM_OFF', 0x84000008, False, 'any',
     'psci', 'system_off', ()),
    ('SYSTEM_RESET', 0x84000009, False, 'any',
     'psci', 'system_reset', ()),
    ('SYSTEM_RESET2_32', 0x84000012, False, 'any',
     'psci', 'system_reset2', (('reset_type', 32), ('cookie', 32),)),
    ('SYSTEM_RESET2', 0xc4000012, True, 'any',
     'psci', 'system_reset2', (('reset_type', 32), ('cookie', 64),)),
    ('PSCI_FEATURES', 0x8400000a, False, 'any',
     'psci', 'psci_features', (('psci_func_id', 32),)),
    ('SMCCC_VERSION', 0x80000000, False, 'any',
     'smccc', 'smccc_version', ()),
    ('SMCCC_ARCH_FEATURES', 0x80000001, False, 'any',
     'smccc', 'smccc_arch_features', (('arch_func_id', 32),)),
    ('HV_VERSION', 0xc6000000, True, 'any',
     'hv', 'hv_version', ()),
    ('VM_CREATE', 0xc6000001, True, 'control',
     'hv', 'vm_create', (('vm', 16), ('quota', 32),)),
    ('VM_DESTROY', 0xc6000002, True, 'control',
     'hv', 'vm_destroy', (('vm', 16),)),
    ('VM_PAUSE', 0xc6000003, True, 'control',
     'hv', 'vm_pause', (('vm', 16),)),
    ('VM_RESUME', 0xc6000004, True, 'control',
     'hv', 'vm_resume', (('vm', 16),)),
    ('MEM_POPULATE', 0xc6000010, True, 'any',
     'hv', 'mem_populate', (('gfn', 32), ('perm', 3),)),
    ('MEM_RELEASE', 0xc6000011, True, 'any',
     'hv', 'mem_release', (('gfn', 32),)),
    ('MEM_SHARE', 0xc6000020, True, 'any',
     'hv', 'mem_share', (('base', 32), ('count', 32), ('borrowers', 16), ('perm', 3),)),
    ('MEM_LEND', 0xc6000021, True, 'any',
     'hv', 'mem_lend', (('base', 32), ('count', 32), ('borrowers', 16), ('perm', 3),)),
    ('MEM_DONATE', 0xc6000022, True, 'any',
     'hv', 'mem_donate', (('base', 32), ('count', 32), ('borrowers', 16), ('perm', 3),)),
    ('MEM_RETRIEVE', 0xc6000023, True, 'any',
     'hv', 'mem_retrieve', (('handle', 16), ('base', 32),)),
    ('MEM_RELINQUISH', 0xc6000024, True, 'any',
     'hv', 'mem_relinquish', (('handle', 16),)),
    ('MEM_RECLAIM', 0xc6000025, True, 'any',
     'hv', 'mem_reclaim', (('handle', 16),)),
    ('EVTCHN_ALLOC_UNBOUND', 0xc6000030, True, 'any',
     'hv', 'evtchn_alloc_unbound', (('remote', 16),)),
    ('EVTCHN_BIND_INTERDOMAIN', 0xc6000031, True, 'any',
     'hv', 'evtchn_bind_interdomain', (('remote', 16), ('remote_port', 16),)),
    ('EVTCHN_SEND', 0xc6000032, True, 'any',
     'hv', 'evtchn_send', (('port', 16),)),
    ('EVTCHN_CLOSE', 0xc6000033, True, 'any',
     'hv', 'evtchn_close', (('port', 16),)),
    ('EVTCHN_MASK', 0xc6000034, True, 'any',
     'hv', 'evtchn_mask', (('port', 16),)),
    ('EVTCHN_UNMASK', 0xc6000035, True, 'any',
     'hv', 'evtchn_unmask', (('port', 16),)),
    ('EVTCHN_STATUS', 0xc6000036, True, 'any',
     'hv', 'evtchn_status', (('port', 16),)),
    ('EVTCHN_CLEAR', 0xc6000037, True, 'any',
     'hv', 'evtchn_clear', (('port', 16),)),
    ('IRQ_ACK', 0xc6000040, True, 'any',
     'hv', 'irq_ack', (('line', 8),)),
    ('DEV_ASSIGN', 0xc6000050, True, 'control',
     'hv', 'dev_assign', (('device', 16), ('vm', 16),)),
    ('DEV_DEASSIGN', 0xc6000051, True, 'control',
     'hv', 'dev_deassign', (('device', 16),)),
)

# name, ((arg name, width), ...)
EVENTS: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = (
    ('VCPU_START', (('vm', 16), ('vcpu', 16),)),
    ('DEVICE_IRQ', (('device', 16),)),
)

# convention: (function-id register, argument registers, result registers)
CONVENTIONS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    'arm64': ('x0', ('x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7'),
        ('x0', 'x1', 'x2', 'x3')),
    'x86_64': ('rax', ('rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'),
        ('rax',)),
}
