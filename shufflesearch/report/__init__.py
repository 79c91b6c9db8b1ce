"""Reports: records -> tables and figures. Pure functions; matplotlib imported lazily."""
