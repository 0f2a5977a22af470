"""Limits shared by the grading pool (``rewards.pool``) and the code sandbox
(``rewards.sandbox``). Standard library only, as the sandbox is: an unprivileged copy of the
code verifier imports it without the project's dependencies."""

#: How many times its CPU limit a task of the pool or a sandboxed program may take in
#: wall-clock time, waiting or given no CPU.
WALL_FACTOR = 3.0
