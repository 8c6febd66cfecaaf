"""What the app keeps: the conversation log (SQLAlchemy, SQLite or PostgreSQL) and the recorder that writes it."""
