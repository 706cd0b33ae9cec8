"""Boot scripts rendered into EC2 user data (shipped as package data)."""
