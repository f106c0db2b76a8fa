"""Unit-test fixtures. Plots are drawn off screen."""
import matplotlib

matplotlib.use("Agg")
