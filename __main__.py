"""CloudStack on EC2: validate the stack's settings, declare the components, export the outputs."""

from components.program import pulumi_program

pulumi_program()
