"""The prototyping workbench: the conversation log and feedback, the review page, and the compare page."""
