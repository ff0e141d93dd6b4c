"""The plan API: seed 003's endpoints as a Powertools Router (:func:`.router.build_plan_router`)."""
