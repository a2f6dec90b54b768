"""Post-hoc tail calibration of any model in the zoo, chosen on val, and deployment priors.

- :mod:`~ltzoo.calibration.heads`: every head as an affine map of a pre-logit vector, and back;
- :mod:`~ltzoo.calibration.select`: the methods (la, tau-norm, ncm), their grids, the choice on val;
- :mod:`~ltzoo.calibration.priors`: deployment priors (uniform, train, a file by label name);
- :mod:`~ltzoo.calibration.shift`: bias-corrected temperature scaling and the EM prior estimate;
- :mod:`~ltzoo.calibration.job`: ``ltzoo calibrate``, which writes the calibrated model as a new run.
"""

# The method names (torch-free: the `ltzoo calibrate` parser reads them). A tie on val keeps the earlier of
# SIMPLICITY: no change, then the one-parameter bias change, the weight change, the new weights.
NONE = "none"
AUTO = "auto"
METHODS = ("la", "tau-norm", "ncm")
SIMPLICITY = (NONE, *METHODS)
METHOD_CHOICES = (AUTO, NONE, *METHODS)
