"""The book's machinery, beside the library: profiles (:mod:`~flatcomp.lab.config`), data,
models, the training loop at a profile (:mod:`~flatcomp.lab.train`), the experiments and their
results store, the plan that runs them, and the tables, figures and claims the chapters show.

Nothing in the library (the modules directly in :mod:`flatcomp`) imports from here.
"""
