//! Placeholder; see the agent issue.
