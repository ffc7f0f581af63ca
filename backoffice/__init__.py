"""Staff in the back office: roles (Django groups), the audit log of their
actions, and secrets shown once after a redirect."""
