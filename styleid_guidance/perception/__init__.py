"""The perception loop the paper describes: generate StyleBench data, run the human studies, fit
psychometric curves, and select the strength levels people still recognise."""
