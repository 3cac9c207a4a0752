"""The concrete spec under random hypercall sequences keeps every invariant."""

from spec.campaign import make_machine

TestHypervisorMachine = make_machine().TestCase
