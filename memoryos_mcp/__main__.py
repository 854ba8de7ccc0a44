from memoryos_mcp.cli import main

main()
