"""CalDAV (RFC 4791) for the tasks: each category a collection of VTODOs, served beside /mcp (docs/caldav.md)."""
