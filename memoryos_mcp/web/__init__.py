"""The memory page: what is remembered, shown to the person it is about and curated by them, served by the
process that holds the store (stdio: on loopback beside it; streamable HTTP: mounted at /ui). Every action
goes through the same service calls as the tools (`service.facade.MemoryService`)."""
