"""The outcome lab (issue 11): problems recreated in throwaway network namespaces, diagnosed and fixed with tcptune,
measured before and after. ``hosts`` builds the machines, ``workloads`` runs inside them, ``scenarios`` drives each
problem, ``tuned`` reads tuned's profiles for comparison."""
