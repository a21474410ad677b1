"""The pipeline's stages, one module each, run by dvc.yaml as ``python -m stages.<name>``.

Run as modules so that Python puts the working directory (the workspace DVC runs the
stage in: the repository, or the temporary copy of ``dvc exp run --queue`` / ``--temp``)
first on ``sys.path``: ``genrec`` is then imported from that same workspace, never from
the checkout an editable install points at. ``python stages/<name>.py`` would put
``stages/`` first instead and silently run the installed ``genrec``.
"""
