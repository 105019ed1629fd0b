/// The worker library (issue 5).
public enum AgentNamespace {}
