"""The concrete spec under random hypercall sequences keeps every invariant."""

from conformance.drivers import make_machine

TestHypervisorMachine = make_machine().TestCase
