"""metaflow-profiler's Metaflow extension: the @profile_card step decorator and
the profile_card card type. Metaflow glue only; the engine is metaflow_profiler."""
