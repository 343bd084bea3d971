"""Where the service bends its libraries: one module per library, each pinned by its contract
tests (``tests/test_library_contracts.py``, and the test file each module names).

Every private name of a library that the service overrides, calls or reads is reached from this
package and nowhere else; docs/architecture.md lists them (Library adaptations). Each module says
what it changes and why; the rest of the code uses what they export as it would the library's own.
"""
