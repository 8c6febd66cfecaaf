"""The chat itself, apart from any page: the service every way in shares."""
