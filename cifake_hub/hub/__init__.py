"""The Hugging Face Hub: ``cifake-publish`` (:mod:`.publish`) and the check of what landed,
run in a fresh process (:mod:`.check`)."""
