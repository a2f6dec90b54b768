"""``ltzoo select``: race the zoo's recipes on your data (Optuna, successive halving on val), then train, calibrate,
export and card the winner. :mod:`~ltzoo.selection.job` is the command; :mod:`~ltzoo.selection.candidates` what it
races; :mod:`~ltzoo.selection.race` and :mod:`~ltzoo.selection.trials` the race; :mod:`~ltzoo.selection.leaderboard`
what it shows; :mod:`~ltzoo.selection.finalize` the winner."""
