from memoryos_mcp.cli.main import main

main()
