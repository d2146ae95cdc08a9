"""`styleid distill`: a StyleID teacher distilled into a small, fast open_clip student.

    cli  the command   config  DistillConfig   distiller  the run   student  the student model and loss
    report  held-out agreement with the teacher
"""
