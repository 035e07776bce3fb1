"""REINFORCE loss-sign ablations on CartPole and Atari Pong (stages ``pg_cartpole``, ``pg_pong``)."""
