"""Importing this module registers every workflow step, in the routine's order.

Read it as the table of contents of the routine: each module is one part of it.
"""

from adapter.workflow import arrival, core

# [3] Arrival at the specialist clinic. A deleted review Task is registered anew: a referral
# must never go silent because someone removed its Task.
core.on("deleted:Task")(arrival.register_arrival)
