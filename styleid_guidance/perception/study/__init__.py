"""`styleid study`: the human studies (2AFC and same/different) as a local web app.

    cli      the command            plan     which trials each participant sees
    data     the generated data     session  one participant's progress
    app      the web app            store    answers on disk, crash-safe
    export   trials.csv for `styleid psychometric`
"""
