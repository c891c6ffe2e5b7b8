"""Boards on other hosts through labgrid (issue 15): the `labgrid` board type
(hil.labgrid.board), its place agent (hil.labgrid.agent, the only module that imports
labgrid), and a bench host that exports virtual boards (hil.labgrid.virtual_host).
See docs/labs.md."""
