"""Sluice's streaming programs: the sensor-event generator and the basic, windowed and anomaly Spark jobs."""
