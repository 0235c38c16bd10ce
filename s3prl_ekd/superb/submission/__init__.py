"""The SUPERB hidden-set submission folder: build, verify in a fresh process, the files it ships."""
