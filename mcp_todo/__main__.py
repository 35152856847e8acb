from mcp_todo.cli import main

main()
