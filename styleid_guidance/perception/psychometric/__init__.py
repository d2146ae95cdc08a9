"""`styleid psychometric`: psychometric curves and thresholds from the study's answers.

    cli      the command                 trials    reading and checking TRIALS.csv
    fit      one psychometric fit        fit_trials  every (method, style) cell, written as one set
    plot     the curves as images        simulate  simulated observers when no humans are at hand
"""
