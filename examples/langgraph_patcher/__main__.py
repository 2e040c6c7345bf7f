"""``python -m examples.langgraph_patcher``: run the workflow and print every API call."""

from examples.langgraph_patcher.main import main

if __name__ == "__main__":
    main()
