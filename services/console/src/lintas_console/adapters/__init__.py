"""The console's adapters: its Mongo stores, password hashing, and intake's and
referral's HTTP APIs."""
